"""Cardiac cine phantoms: parametric beating heart, bSSFP-like appearance, LR acquisition simulator,
acquisition domains and the paired dataset writer (`gemini-cmr synth`). See docs/phantoms.md."""

from core.synth.dataset import PhantomPair, make_subject, subject_seed, write_dataset, write_demo
from core.synth.domains import DOMAINS, Acquisition, Domain, get_domain

__all__ = ["DOMAINS", "Acquisition", "Domain", "PhantomPair", "get_domain", "make_subject", "subject_seed",
           "write_dataset", "write_demo"]
