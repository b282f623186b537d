"""The real-data evaluation (`core.evaluation.real`): the phenotypes a row carries and their summaries."""

from __future__ import annotations

import numpy as np
import pytest

from gemini_cmr.core.engine import SuperResolver
from gemini_cmr.core.evaluation import real

from ..engine.fakes import FakePredictor, make_study


def test_rows_keep_the_reported_phenotypes_beside_the_acquired_slice_ones():
    s = make_study(n_phases=4, ed_es=(0, 2))

    class Oracle(FakePredictor):
        def predict(self, study, phases=None, progress=None, cancel=None, **kw):
            study.meta.extra.update(heart_centre=s.meta.extra["heart_centre"], heart_frame=s.meta.extra["heart_frame"])
            return super().predict(study, phases, progress, cancel)

    resolver = SuperResolver(model=Oracle())
    row = real.evaluate_study(resolver, s, "p1")
    res = resolver.run(s, phases=[0, 2], meshes="none")
    for k, _, _ in real.REAL_PHENOTYPES:
        # what the product reports (the SR labels) and the volumes of its labels on the acquired slices
        assert row[f"reported_{k}"] == pytest.approx(float(res.phenotypes[k]))
        assert np.isfinite(row[f"pred_{k}"]) and np.isfinite(row[f"manual_{k}"])
    assert row["reported_lv_edv_ml"] != row["pred_lv_edv_ml"]  # SR grid against 8 mm slices
    other = dict(row, subject="p2", reported_lv_ef_pct=row["manual_lv_ef_pct"] + 4.0,
                 pred_lv_ef_pct=row["manual_lv_ef_pct"] - 2.0)
    summary = real.summarise([row, other])
    assert summary["err_reported_lv_ef_pct"]["bias"] == pytest.approx(
        np.mean([row["reported_lv_ef_pct"] - row["manual_lv_ef_pct"], 4.0]))
    assert summary["err_lv_ef_pct"]["bias"] == pytest.approx(
        np.mean([row["pred_lv_ef_pct"] - row["manual_lv_ef_pct"], -2.0]))
    assert "as reported, from the SR labels" in real.format_summary(summary)
    old = [{k: v for k, v in r.items() if not k.startswith("reported_")} for r in (row, other)]
    summary = real.summarise(old)  # rows scored before the reported phenotypes were kept
    assert "err_lv_ef_pct" in summary and not any(k.startswith("err_reported_") for k in summary)
    assert "as reported" not in real.format_summary(summary)
