"""The training wizard's "Real studies with labels" kind: the cohort check table (partial labels, bad
subjects, the held-out split), a real fine-tuning run of a few steps in a separate process, and the finish
page with the starting and the new model side by side before "Use this model now".

GEMINI_WIZARD_SCREENSHOT=1 (re)writes docs/images/wizard_real_data.png (the bad-subjects table) and, when
the Sunnybrook example has been run (scripts/finetune_sunnybrook.sh; another run folder:
GEMINI_FINETUNE_RUN), docs/images/wizard_real_finish.png (its finish page).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.core.train.lr_toy import AFFINE, TINY_RUN, write_cohort, write_subject, write_tiny_model

pytestmark = pytest.mark.gui
RUN_TIMEOUT = 240_000
SHOT = bool(os.environ.get("GEMINI_WIZARD_SCREENSHOT"))
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
FINETUNE_RUN = Path(os.environ.get("GEMINI_FINETUNE_RUN", Path(__file__).resolve().parents[2] / "data" /
                                   "finetune-sunnybrook-401"))


def _real_data_page(qtbot, wiz, source: str, path) -> object:
    from gemini_cmr.app.wizard.wizard import PAGE_REAL_DATA

    if wiz.currentId() != PAGE_REAL_DATA:
        wiz.kind_page.real_radio.setChecked(True)
        wiz.next()
    assert wiz.currentId() == PAGE_REAL_DATA and wiz.kind == "real"
    page = wiz.real_data_page
    page.source_box.setCurrentIndex(page.source_box.findData(source))
    with qtbot.waitSignal(page.checked, timeout=60000):
        page.path_edit.set_text(str(path))
    return page


def _column(page, name: str) -> list[str]:
    from gemini_cmr.app.wizard.page_real_data import COLUMNS

    j = COLUMNS.index(name)
    return [page.table.item(i, j).text() for i in range(page.table.rowCount())]


def test_fine_tune_on_a_partially_labelled_cohort_and_use_it(qtbot, wizard, tmp_path, settings):
    from gemini_cmr.app.wizard.wizard import PAGE_FINISH, PAGE_RUN, PAGE_SETTINGS

    wiz = wizard
    cohort = tmp_path / "cohort"
    write_cohort(cohort, n=3, rv=False)  # s0-s2: LV cavity and myocardium only
    write_subject(cohort, "s3", 3)  # all three structures
    init = write_tiny_model(tmp_path / "start")
    # page 2: the check table, with the structures each subject annotates and the held-out split
    page = _real_data_page(qtbot, wiz, "nifti", cohort)
    assert [r["ok"] for r in page.rows] == [True] * 4 and page.isComplete()
    structures = dict(zip(_column(page, "Subject"), _column(page, "Structures annotated")))
    assert structures["s0"] == "LV, Myo (not annotated: RV)" and structures["s3"] == "LV, Myo, RV"
    assert _column(page, "Split").count("held out") == 1 and len(page.holdout) == 1
    assert "3 training and 1 held-out" in page.split_label.text() and "Partial labels" in page.split_label.text()
    assert all("project" in c for c in _column(page, "Convention"))  # detected
    page.holdout_spin.setValue(2)  # a new split without a new check
    assert len(page.holdout) == 2 and _column(page, "Split").count("held out") == 2
    page.holdout_spin.setValue(1)
    wiz.next()
    assert wiz.currentId() == PAGE_SETTINGS
    # page 3: fine-tune the tiny model for 2 steps; the recipe's values fill the page, a step is measured
    s = wiz.settings_page
    assert s.init_box.isVisible() and s.lr.value() == pytest.approx(2e-4)
    s.init_box.setCurrentIndex(s.init_box.findData("other"))
    s.init_edit.set_text(str(init))
    s.device.setCurrentIndex(s.device.findData("cpu"))
    qtbot.waitUntil(lambda: s.estimate_label.text().startswith("about"), timeout=60000)
    assert "steps of" in s.estimate_label.text() and "measured here" in s.estimate_label.text()
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY_RUN))
    s.config_edit.setText(str(config))
    s.max_steps.setValue(2)
    s.batch.setValue(2)
    s.crop.setValue(48)
    out = tmp_path / "finetune"
    s.out.set_text(str(out))
    assert s.isComplete() and not out.exists()  # nothing written before training starts
    # page 4: the run (a separate gemini-cmr process), then the comparison on the held-out subject
    with qtbot.waitSignal(wiz.run_page.runFinished, timeout=RUN_TIMEOUT) as blocker:
        wiz.next()
        assert wiz.currentId() == PAGE_RUN and wiz.run_page.running()
    run = wiz.run_page
    assert blocker.args == ["done"], run.log_view.toPlainText()[-3000:]
    kinds = [e["event"] for e in run.events]
    assert kinds.count("step") == 2 and "compare" in kinds and kinds[-1] == "compared"
    val = [e for e in run.events if e["event"] == "val"]
    assert val and not any(e["best"] for e in val)  # held-out subjects never choose the checkpoint
    assert run.metric_labels["dice_title"].text().startswith("Held-out")
    assert "--init" in run.log_view.toPlainText()
    cfg = json.loads((out / "wizard-config.json").read_text())
    assert cfg["holdout"] == page.holdout and cfg["init"] == str(init)
    assert len(json.loads((out / "subjects.json").read_text())["subjects"]) == 4
    # page 5: before and after side by side, then "Use this model now"
    wiz.next()
    assert wiz.currentId() == PAGE_FINISH
    fin = wiz.finish_page
    headers = [fin.table.horizontalHeaderItem(j).text() for j in range(4)]
    assert headers[1].startswith("start (") and headers[2].startswith("fine-tuned (") and headers[3] == "Change"
    metrics = [fin.table.item(i, 0).text() for i in range(fin.table.rowCount())]
    held = page.holdout[0]
    assert "LV cavity Dice" in metrics and "LV myocardium Dice" in metrics
    assert ("RV cavity Dice" in metrics) == (held == "s3")  # RV figures only where RV is annotated
    assert any(m.startswith("LVEDV error") for m in metrics)  # (an untrained tiny model: no LVEF)
    for i in range(2):
        value = fin.table.item(metrics.index("LV cavity Dice"), 1 + i).text()
        assert 0 <= float(value) <= 1
    assert fin.use_button.isEnabled() and fin.model_path == str(out / "model")
    assert (out / "model" / "MODEL_CARD.md").is_file()
    with qtbot.waitSignal(wiz.modelChosen) as chosen:
        fin.use_button.click()
    assert chosen.args == ["gemini-gan", str(out / "model")] and settings.model == str(out / "model")


def test_bad_subjects_and_too_few_subjects_block_next(qtbot, wizard, tmp_path):
    wiz = wizard
    bad = tmp_path / "bad"
    write_subject(bad, "good1", 0)
    write_subject(bad, "good2", 1)
    shifted = AFFINE.copy()
    shifted[0, 3] = 9.0
    write_subject(bad, "offgrid", 2, label_affine=shifted)
    write_subject(bad, "values", 3, values={3: 5})
    write_subject(bad, "empty", 4, labelled=False)
    from gemini_cmr.core.io.nifti import save_nifti

    save_nifti(bad / "nolabels.nii.gz", np.zeros((2, 5, 32, 32), np.float32), AFFINE)
    before = sorted(p.name for p in bad.iterdir())
    page = _real_data_page(qtbot, wiz, "nifti", bad)
    problems = dict(zip(_column(page, "Subject"), _column(page, "Problem")))
    assert len(problems) == 6 and not page.isComplete()
    assert not wiz.button(wiz.WizardButton.NextButton).isEnabled()
    assert "another grid" in problems["offgrid"] and "[1, 2, 5]" in problems["values"]
    assert problems["empty"] == "no labelled slice" and "no label file" in problems["nolabels"]
    assert problems["good1"] == "" and "problem(s) found" in page.status.text()
    assert sorted(p.name for p in bad.iterdir()) == before  # the check writes nothing
    if SHOT:
        wiz.resize(1500, 700)
        qtbot.wait(200)
        assert wiz.grab().save(str(IMAGES / "wizard_real_data.png"))
    # a chosen convention the values do not fit
    page.convention_box.setCurrentIndex(page.convention_box.findData("ukdhp"))
    qtbot.waitUntil(lambda: not page.busy() and bool(page.rows), timeout=60000)
    qtbot.waitUntil(lambda: "problem" in page.status.text(), timeout=60000)
    assert "unexpected label values" in dict(zip(_column(page, "Subject"), _column(page, "Problem")))["good1"]
    # one subject: no held-out split
    single = tmp_path / "single"
    write_subject(single, "only", 0)
    page.convention_box.setCurrentIndex(page.convention_box.findData("auto"))
    qtbot.waitUntil(lambda: not page.busy(), timeout=60000)
    with qtbot.waitSignal(page.checked, timeout=60000):
        page.path_edit.set_text(str(single))
    assert page.rows[0]["ok"] and not page.isComplete()
    assert "a held-out split needs at least 2" in page.status.text()
    # an ACDC folder that is not one: one line, Next blocked
    with qtbot.waitSignal(page.checked, timeout=60000):
        page.source_box.setCurrentIndex(page.source_box.findData("acdc"))
    assert not page.isComplete() and "Cannot use this folder" in page.status.text()
    assert "\n" not in page.status.text()


@pytest.mark.skipif(not SHOT or not (FINETUNE_RUN / "finetune.json").is_file(),
                    reason="set GEMINI_WIZARD_SCREENSHOT=1 after scripts/finetune_sunnybrook.sh")
def test_finish_page_screenshot_of_the_sunnybrook_example(qtbot, wizard):
    from gemini_cmr.app.wizard.wizard import PAGE_FINISH

    wiz = wizard
    wiz.kind_page.real_radio.setChecked(True)
    wiz.settings_page.out.set_text(str(FINETUNE_RUN.resolve()), emit=False)
    wiz.setStartId(PAGE_FINISH)
    wiz.restart()
    assert wiz.currentId() == PAGE_FINISH and wiz.finish_page.use_button.isEnabled()
    wiz.resize(1300, 640)
    qtbot.wait(200)
    assert wiz.grab().save(str(IMAGES / "wizard_real_finish.png"))
