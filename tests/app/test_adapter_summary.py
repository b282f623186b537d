"""The Adapter chooser explains itself: when V-AMA helps, and the chosen adapter's record (model, source,
measured effect) from its config.json (`core.vama.summary`)."""

from __future__ import annotations

import json

from gemini_cmr.app.menus import set_combo_path


def test_choosing_an_adapter_shows_its_summary(window, tmp_path):
    assert "helps when" in window.adapter_box.toolTip()  # no adapter: when one is worth using
    run = tmp_path / "adapter-ge"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({
        "kind": "vama", "version": 1, "gemini_model_id": "2a1f57e8a4eb" + "0" * 52,
        "training": {"source_description": "2 studies, 440 slices (GE MEDICAL SYSTEMS, dicom) from ge/",
                     "target_description": "80 studies, 1516 slices (acdc) from acdc:training"},
        "evaluation": {"held_out": {"where": "held-out GE series SCD0000101",
                                    "before": {"lv_cavity": 0.913, "lv_myocardium": 0.793},
                                    "after": {"lv_cavity": 0.915, "lv_myocardium": 0.780}}}}))
    set_combo_path(window.adapter_box, str(run))
    tip = window.adapter_box.toolTip()
    assert "2a1f57e8a4eb" in tip and "GE MEDICAL SYSTEMS" in tip and "helps when" in tip
    assert "held-out GE series SCD0000101): LV cavity 0.913 -> 0.915, myocardium 0.793 -> 0.780" in tip
    assert "0.793 -> 0.780" in window.statusBar().currentMessage()
    (run / "config.json").write_text("{}")
    set_combo_path(window.adapter_box, "")
    set_combo_path(window.adapter_box, str(run))
    assert "not a V-AMA adapter" in window.adapter_box.toolTip()
