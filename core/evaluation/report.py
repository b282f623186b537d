"""What every evaluation reports the same way: the phenotype keys and their names, mean (sd) entries."""

from __future__ import annotations

import math
from collections.abc import Iterable

from gemini_cmr.core.evaluation.metrics import mean_sd

# (key in `core.phenotypes.compute_phenotypes`, short name, unit), in the order the tables show them.
PHENOTYPES = (
    ("lv_edv_ml", "LVEDV", "mL"), ("lv_esv_ml", "LVESV", "mL"), ("lv_ef_pct", "LVEF", "%"),
    ("lv_mass_g", "LV mass", "g"), ("rv_edv_ml", "RVEDV", "mL"), ("rv_esv_ml", "RVESV", "mL"),
    ("rv_ef_pct", "RVEF", "%"),
)  # fmt: skip


def mean_sd_entry(values: Iterable[float]) -> dict[str, float]:
    """{"mean", "sd"} over the finite values (sample sd; NaN when there is none)."""
    m, s = mean_sd(values)
    return {"mean": m, "sd": s}


def format_mean_sd_entry(entry: dict[str, float], digits: int = 2) -> str:
    """'0.87 (0.03)'; 'n/a' when the mean is missing or not finite."""
    m, s = entry["mean"], entry["sd"]
    if m is None or not math.isfinite(m):
        return "n/a"
    return f"{m:.{digits}f} ({s:.{digits}f})"


__all__ = ["PHENOTYPES", "format_mean_sd_entry", "mean_sd_entry"]
