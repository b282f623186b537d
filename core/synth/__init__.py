"""Cardiac cine phantoms: parametric beating heart, bSSFP-like appearance, LR acquisition simulator,
acquisition domains and the paired dataset writer (`gemini-cmr synth`). See docs/phantoms.md."""

from core.synth.acquisition import SliceShifts, plan_lr_grid, simulate_lr_from_volume
from core.synth.anatomy import ANATOMY_RANGES, Phantom, Tissue, sample_heart_params
from core.synth.appearance import synthesize_from_labels
from core.synth.dataset import PhantomPair, make_subject, subject_seed, write_dataset, write_demo
from core.synth.domains import DOMAINS, Acquisition, Domain, get_domain

__all__ = [
    "ANATOMY_RANGES", "DOMAINS", "Acquisition", "Domain", "Phantom", "PhantomPair", "SliceShifts", "Tissue",
    "get_domain", "make_subject", "plan_lr_grid", "sample_heart_params", "simulate_lr_from_volume",
    "subject_seed", "synthesize_from_labels", "write_dataset", "write_demo",
]
