"""Evaluation on real studies with manual labels on the acquired slices (ACDC, M&Ms, expert contours).

The whole pipeline (`core.engine.SuperResolver`, whole field of view) super-resolves and segments each
study; the SR labels are put onto the acquired LR slices (the engine's `lr_labels`,
`core.geometry.labels_onto_slices`) and compared with the manual labels there:
- 3D Dice per structure at ED and ES (`evaluate_study`, `summarise`);
- phenotypes from both label sets on the acquired grid (`core.phenotypes`: LVEDV, LVESV, LVEF, LV mass =
  myocardial volume at ED x 1.05 g/mL, RVEDV), errors prediction - manual: bias, 95% limits of agreement
  (bias +- 1.96 sd) and median |error|;
- `contour_dice`: studies whose contours cover only some slices (Sunnybrook: endocardium and epicardium,
  no RV): Dice of LV cavity and myocardium on the contoured slices of each contoured phase.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from gemini_cmr.core.evaluation.metrics import bland_altman, dice, dice_per_structure, mean_sd
from gemini_cmr.core.evaluation.report import PHENOTYPES
from gemini_cmr.core.phenotypes import compute_phenotypes
from gemini_cmr.core.study import STRUCTURES, Grid, Study, StudyMeta

# The phenotypes a study with labels at ED and ES supports (RV end-systole is not always labelled).
# The per-patient Dice columns of an evaluation row, ED then ES, each structure in `STRUCTURES` order.
DICE_COLUMNS = tuple(f"{tag}_{k}" for tag in ("ed", "es") for k in STRUCTURES.values())
REAL_PHENOTYPES = tuple(p for p in PHENOTYPES if p[0] in ("lv_edv_ml", "lv_esv_ml", "lv_ef_pct", "lv_mass_g",
                                                            "rv_edv_ml"))
Say = Callable[[str], None]


def ed_es_phenotypes(labels_ed: np.ndarray, labels_es: np.ndarray, grid: Grid) -> dict[str, float]:
    """The `REAL_PHENOTYPES` of ED and ES label volumes on `grid` (`core.phenotypes`)."""
    ph = compute_phenotypes(np.stack([labels_ed, labels_es]), grid, phases=[0, 1],
                            meta=StudyMeta(ed_phase=0, es_phase=1))
    return {k: float(ph[k]) for k, _, _ in REAL_PHENOTYPES}


def evaluate_study(resolver, study: Study, name: str = "", tta: bool = False) -> dict[str, Any]:
    """Dice at ED and ES and phenotypes (prediction and manual) of one study whose labels and ED/ES are
    known; one flat row: `ed_<structure>`, `es_<structure>`, `pred_<phenotype>` (from the product's labels
    on the acquired slices, as the manual ones: slice areas x spacing), `reported_<phenotype>` (what the product
    reports, `Result.phenotypes`: from the SR labels), `manual_<phenotype>`.
    `tta`: the pipeline with test-time augmentation (`SuperResolver.run(tta=True)`)."""
    ed, es = study.meta.ed_phase, study.meta.es_phase
    t0 = time.perf_counter()
    res = resolver.run(study, phases=[ed, es], meshes="none", **({"tta": True} if tta else {}))
    seconds = time.perf_counter() - t0
    pred = {p: res.lr_labels[i] for i, p in enumerate(res.phases)}
    row: dict[str, Any] = {"subject": name or study.meta.patient_id, "group": study.meta.group,
                           "seconds": seconds}
    for tag, t in (("ed", ed), ("es", es)):
        row.update({f"{tag}_{k}": v for k, v in dice_per_structure(pred[t], study.labels[t]).items()})
    grid = study.grid
    row.update({f"pred_{k}": v for k, v in ed_es_phenotypes(pred[ed], pred[es], grid).items()})
    reported = getattr(res, "phenotypes", None) or {}
    if reported.get("ed_phase") == ed and reported.get("es_phase") == es:
        row.update({f"reported_{k}": float(reported[k]) for k, _, _ in REAL_PHENOTYPES if k in reported})
    row.update({f"manual_{k}": v for k, v in ed_es_phenotypes(study.labels[ed], study.labels[es], grid).items()})
    return row


def evaluate_studies(resolver, studies: Iterable[tuple[str, Callable[[], Study]]], say: Say | None = None,
                     tta: bool = False) -> list[dict[str, Any]]:
    """`evaluate_study` over (name, loader) pairs, loading one study at a time."""
    rows = []
    for name, load in studies:
        row = evaluate_study(resolver, load(), name, tta)
        rows.append(row)
        if say:
            say(format_row(row))
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Dice mean (sd) per phase and structure; phenotype errors: bias, limits of agreement, median |error|."""
    summary: dict[str, Any] = {"n": len(rows)}
    for col in DICE_COLUMNS:
        m, s = mean_sd(r[col] for r in rows)
        summary[f"dice_{col}"] = {"mean": m, "sd": s}
    for source, prefix in (("pred", "err_"), ("reported", "err_reported_")):
        for k, _, _ in REAL_PHENOTYPES:
            if not rows or any(f"{source}_{k}" not in r for r in rows):
                continue  # rows measured before the reported phenotypes were kept
            pred, manual = [r[f"{source}_{k}"] for r in rows], [r[f"manual_{k}"] for r in rows]
            ba = bland_altman(pred, manual)
            err = np.asarray(pred, dtype=np.float64) - np.asarray(manual, dtype=np.float64)
            finite = np.abs(err[np.isfinite(err)])
            ba["median_abs"] = float(np.median(finite)) if finite.size else float("nan")
            summary[f"{prefix}{k}"] = ba
    return summary


def format_row(row: dict[str, Any]) -> str:
    d = "/".join(f"{row[f'ed_{k}']:.3f}" for k in STRUCTURES.values())
    s = "/".join(f"{row[f'es_{k}']:.3f}" for k in STRUCTURES.values())
    return (f"{row['subject']} {row.get('group') or '':5s} ED Dice {d} ES {s} LVEF {row['pred_lv_ef_pct']:.1f} "
            f"vs {row['manual_lv_ef_pct']:.1f} ({row['seconds']:.1f} s)")


def format_summary(summary: dict[str, Any]) -> str:
    """Markdown: Dice per structure at ED and ES, then the phenotype errors."""
    lines = ["| structure | ED Dice mean (sd) | ES Dice mean (sd) |", "|---|---|---|"]
    for k in STRUCTURES.values():
        a, b = summary[f"dice_ed_{k}"], summary[f"dice_es_{k}"]
        lines.append(f"| {k} | {a['mean']:.3f} ({a['sd']:.3f}) | {b['mean']:.3f} ({b['sd']:.3f}) |")
    reported = all(f"err_reported_{k}" in summary for k, _, _ in REAL_PHENOTYPES)
    head = "| phenotype | bias | limits of agreement | median abs error |"
    if reported:
        head = ("| phenotype (labels on the acquired slices; as reported, from the SR labels) | bias | limits of "
                "agreement | median abs error |")
    lines += ["", head, "|---|---|---|---|"]
    for k, name, unit in REAL_PHENOTYPES:
        errs = [summary[f"err_{k}"]] + ([summary[f"err_reported_{k}"]] if reported else [])
        lines.append(f"| {name} ({unit}) | " + "; ".join(f"{e['bias']:+.1f}" for e in errs) + " | "
                     + "; ".join(f"{e['loa_low']:+.1f} to {e['loa_high']:+.1f}" for e in errs) + " | "
                     + "; ".join(f"{e['median_abs']:.1f}" for e in errs) + " |")
    return "\n".join(lines)


def acdc_studies(data, split: str = "val") -> list[tuple[str, Callable[[], Study]]]:
    """(patient id, loader) of the ACDC training folder's `split` (`core.io.layouts.acdc_split`: the
    validation split holds the patients whose number is a multiple of 5)."""
    from gemini_cmr.core.io.layouts import acdc_subjects, load_acdc

    return [(sid, lambda f=folder: load_acdc(f)) for sid, folder, sp in acdc_subjects(data) if sp == split]


def contour_dice(resolver, study: Study, tta: bool = False) -> list[dict[str, Any]]:
    """Per contoured phase: LV cavity and LV myocardium Dice on the contoured slices only (the study
    carries `meta.extra["contour_slices"]` = [(phase, slice)], as `core.io.contours.attach_contours` sets).
    `tta`: the pipeline with test-time augmentation."""
    pairs = study.meta.extra["contour_slices"]
    phases = study.labelled_phases
    r = resolver.run(study, phases=phases, meshes="none", **({"tta": True} if tta else {}))
    rows = []
    for t in phases:
        ks = sorted(k for tt, k in pairs if tt == t)
        pred, truth = r.lr_labels[r.phases.index(t)][ks], study.labels[t][ks]
        has_myo = bool((truth == 2).any())
        rows.append({"phase": t, "slices": len(ks), "model_id": r.model_id,
                     "lv_cavity": dice(pred, truth, 1),
                     "lv_myocardium": dice(pred, truth, 2) if has_myo else float("nan")})
    return rows


__all__ = ["DICE_COLUMNS", "REAL_PHENOTYPES", "acdc_studies", "contour_dice", "ed_es_phenotypes", "evaluate_studies",
           "evaluate_study", "format_row", "format_summary", "summarise"]
