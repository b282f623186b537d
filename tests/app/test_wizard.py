"""The training wizard (app/wizard): data checks, a real `gemini-cmr train gemini` run on tiny phantoms,
cancel -> loadable checkpoint -> resume, "Use this model now" in the main window.

The runs are real (separate processes, `--progress-json`) with a tiny network (widths 4-8-16, crop 32) on
3-4 phantom subjects with 4 phases, so the whole file takes well under a minute and a half on 2 busy cores.
Set GEMINI_WIZARD_SCREENSHOT=1 to (re)write docs/images/wizard_run.png (a longer run, marked slow).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

pytestmark = pytest.mark.gui

TINY = {"model": {"widths": [4, 8, 16]}, "disc_width": 4, "amp": "off", "num_threads": 1, "max_phases": 2,
        "checkpoint_every": 2}
RUN_TIMEOUT = 120_000


@pytest.fixture(scope="session")
def phantoms(tmp_path_factory):
    """4 phantom subjects (2 train, 1 val, 1 test), 4 phases each, written by core.synth."""
    from gemini_cmr.core.synth.dataset import write_dataset

    out = tmp_path_factory.mktemp("wizard") / "phantoms"
    write_dataset(out, 4, seed=0, n_phases=4)
    return out


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY))
    return path


def _choose_data(qtbot, wiz, folder: Path) -> None:
    from gemini_cmr.app.wizard.wizard import PAGE_DATA

    if wiz.currentId() != PAGE_DATA:
        wiz.next()
    with qtbot.waitSignal(wiz.data_page.checked, timeout=60000):
        wiz.data_page.data_edit.set_text(str(folder))


def _settings(wiz, out: Path, config: Path, epochs: int = 4, max_steps: int = 0) -> None:
    page = wiz.settings_page
    page.epochs.setValue(epochs)
    page.max_steps.setValue(max_steps)
    page.batch.setValue(2)
    page.crop.setValue(32)
    page.lr.setValue(0.003)
    page.device.setCurrentIndex(page.device.findData("cpu"))
    page.config_edit.setText(str(config))
    page.out.set_text(str(out))


def _start_run(qtbot, wiz):
    """Next from the settings page: the run page starts the training process."""
    from gemini_cmr.app.wizard.wizard import PAGE_RUN

    assert wiz.settings_page.isComplete()
    wiz.next()
    assert wiz.currentId() == PAGE_RUN and wiz.run_page.running()
    return wiz.run_page


def test_train_gemini_on_generated_phantoms_and_use_it(qtbot, wizard, tmp_path, tiny_config, settings):
    from gemini_cmr.app.wizard.wizard import PAGE_FINISH, PAGE_SETTINGS
    from gemini_cmr.core.predict import Predictor

    wiz = wizard
    assert wiz.kind == "gemini"
    wiz.next()
    # page 2: generate 3 phantom subjects with `gemini-cmr synth`; the wizard checks and uses them
    with qtbot.waitSignal(wiz.data_page.checked, timeout=60000):
        wiz.data_page.generate_phantoms(tmp_path / "gen", subjects=3, phases=4)
    page = wiz.data_page
    assert page.data_edit.text() == str(tmp_path / "gen")
    assert [r[1] for r in page.rows] == [True, True] and page.isComplete()  # train + val subjects checked
    assert page.table.rowCount() == 2 and page.table.item(0, 1).text() == "ok"
    assert "1 training, 1 validation, 1 test" in page.split_label.text()
    wiz.next()
    assert wiz.currentId() == PAGE_SETTINGS
    # page 3 -> 4: train (1 training subject x 2 phases, batch 2: 1 step per epoch, validation every epoch)
    _settings(wiz, tmp_path / "run", tiny_config, epochs=4)
    with qtbot.waitSignal(wiz.run_page.runFinished, timeout=RUN_TIMEOUT) as blocker:
        run = _start_run(qtbot, wiz)
        assert not wiz.button(wiz.WizardButton.NextButton).isEnabled()
    assert blocker.args == ["done"], run.log_view.toPlainText()[-2000:]
    kinds = [e["event"] for e in run.events]
    assert kinds[0] == "start" and kinds.count("step") == 4 and kinds.count("val") == 4 and kinds[-1] == "done"
    assert run.progress.value() == 1000 and "step 4/4" in run.eta_label.text()
    assert run.metric_labels["loss"].text() != "–" and run.metric_labels["psnr"].text().endswith("dB")
    assert len(run.metric_labels["dice"].text().split(" / ")) == 3
    assert len(run.loss_plot.series["loss"]) == 4 and len(run.val_plot.series["Dice LV"]) == 4
    assert "train gemini" in run.log_view.toPlainText()
    assert run.isComplete() and wiz.button(wiz.WizardButton.NextButton).isEnabled()
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())["training"]
    assert cfg["crop"] == 32 and cfg["batch_size"] == 2 and cfg["model"]["widths"] == [4, 8, 16]
    # page 5: final metrics, "Use this model now" selects it in the main window and remembers it
    wiz.next()
    assert wiz.currentId() == PAGE_FINISH
    fin = wiz.finish_page
    assert fin.model_path == str(tmp_path / "run" / "best")
    metrics = {fin.table.item(i, 0).text(): fin.table.item(i, 1).text() for i in range(fin.table.rowCount())}
    assert 0.0 <= float(metrics["Mean 3D Dice"]) <= 1.0 and metrics["PSNR"].endswith("dB")

    with qtbot.waitSignal(wiz.modelChosen) as chosen:
        qtbot.mouseClick(fin.use_button, Qt.MouseButton.LeftButton)
    best = str(tmp_path / "run" / "best")
    assert chosen.args == ["gemini-gan", best] and settings.model == best
    assert "Selected" in fin.used_label.text()

    # Tools > Train a Model… in the main window: its wizard's "Use this model now" selects the model there
    from gemini_cmr.app.main_window import MainWindow

    win = MainWindow(settings, interactive=False, with_3d=False)
    qtbot.addWidget(win)
    tools = next(a.menu() for a in win.menuBar().actions() if a.text() == "&Tools")
    assert win.train_action in tools.actions()
    wiz2 = win.open_training_wizard()
    wiz2.finish_page.model_path = best
    wiz2.finish_page.use_model()
    assert win.model_path == best and win.model_box.currentText() == "best"
    wiz2.close()
    p = Predictor.load(win.model_path, device="cpu")
    assert p.model_id


def test_cancel_leaves_a_loadable_checkpoint_and_resume_continues(qtbot, wizard, phantoms, tmp_path):
    from gemini_cmr.core.predict import Predictor
    from gemini_cmr.core.train.loop import read_state

    wiz = wizard
    _choose_data(qtbot, wiz, phantoms)
    assert wiz.data_page.isComplete()
    wiz.next()
    out = tmp_path / "run"
    config = tmp_path / "no-val.json"  # validation only at the end: steps come fast
    config.write_text(json.dumps({**TINY, "val_every": 1000}))
    _settings(wiz, out, config, epochs=500)  # far longer than the test: it is cancelled
    run = _start_run(qtbot, wiz)
    with qtbot.waitSignal(run.eventReceived, timeout=RUN_TIMEOUT,
                          check_params_cb=lambda e: e["event"] == "step" and e["step"] >= 3):
        pass
    with qtbot.waitSignal(run.runFinished, timeout=RUN_TIMEOUT) as blocker:
        qtbot.mouseClick(run.cancel_button, Qt.MouseButton.LeftButton)
    assert blocker.args == ["interrupted"], run.log_view.toPlainText()[-2000:]
    assert run.events[-1]["event"] == "interrupted"
    _, meta = read_state(out / "last")
    stopped = meta["step"]
    assert stopped >= 3 and run.resume_button.isEnabled() and not run.isComplete()
    assert "Resume" in run.state_label.text()
    assert Predictor.load(out / "last", device="cpu").model_id  # a valid model
    # Resume: the same run continues from its last checkpoint, then is cancelled again
    with qtbot.waitSignal(run.eventReceived, timeout=RUN_TIMEOUT,
                          check_params_cb=lambda e: e["event"] == "step") as first:
        qtbot.mouseClick(run.resume_button, Qt.MouseButton.LeftButton)
    start = next(e for e in run.events if e["event"] == "start" and e.get("resumed"))
    assert start["step"] == stopped and first.args[0]["step"] == stopped + 1
    assert "--resume" in run.proc.args
    with qtbot.waitSignal(run.runFinished, timeout=RUN_TIMEOUT) as blocker:
        run.cancel()
    assert blocker.args == ["interrupted"]
    assert read_state(out / "last")[1]["step"] > stopped
    # the settings page now offers to resume the run in that folder, or a new name
    wiz.back()
    page = wiz.settings_page
    assert page.state == "run" and not page.isComplete() and page.resume_button.isVisible()
    page.choose_resume()
    assert page.isComplete() and page.resume
    page.choose_new_name()
    assert page.out_path == tmp_path / "run-2" and page.isComplete() and not page.resume


def test_invalid_data_is_reported_and_blocks_next(qtbot, wizard, phantoms, tmp_path):
    wiz = wizard
    bad = tmp_path / "bad"
    shutil.copytree(phantoms, bad)
    (bad / "sub-001" / "hr_labels.nii.gz").unlink()
    mf = json.loads((bad / "manifest.json").read_text())
    mf["subjects"][0]["es_phase"] = 9
    (bad / "manifest.json").write_text(json.dumps(mf))
    _choose_data(qtbot, wiz, bad)
    page = wiz.data_page
    rows = {name: (ok, problem) for name, ok, problem in page.rows}
    assert rows["sub-000"][0] is False and "es_phase 9" in rows["sub-000"][1]
    assert rows["sub-001"][0] is False and "hr_labels file not found" in rows["sub-001"][1]
    assert rows["sub-002"] == (True, "")
    assert "sub-003" not in rows  # test split: not used for training
    assert page.table.item(1, 1).text() == "problem" and "2 problem(s)" in page.status.text()
    assert not page.isComplete() and not wiz.button(wiz.WizardButton.NextButton).isEnabled()

    # not a paired dataset (an ACDC-style folder): one row, and why
    acdc = tmp_path / "acdc"
    (acdc / "patient001").mkdir(parents=True)
    with qtbot.waitSignal(page.checked, timeout=60000):
        page.data_edit.set_text(str(acdc))
    assert page.rows[0][1] is False and "no manifest.json" in page.rows[0][2]
    assert "ACDC-style" in page.status.text() and not page.isComplete()

    # the good set unblocks Next
    with qtbot.waitSignal(page.checked, timeout=60000):
        page.data_edit.set_text(str(phantoms))
    assert page.isComplete() and wiz.button(wiz.WizardButton.NextButton).isEnabled()

    # output folder: one that holds a finished run must be renamed; a file is not a folder
    wiz.next()
    sp = wiz.settings_page
    done = tmp_path / "done"
    for sub in ("last", "best"):
        (done / sub).mkdir(parents=True)
    (done / "last" / "state.json").write_text(json.dumps({"step": 8, "total_steps": 8}))
    (done / "best" / "model.safetensors").write_bytes(b"")
    sp.out.set_text(str(done))
    assert sp.state == "finished" and not sp.isComplete() and not sp.resume_button.isVisible()
    assert "finished run" in sp.out_status.text()
    (tmp_path / "afile").write_text("x")
    sp.out.set_text(str(tmp_path / "afile" / "run"))
    assert not sp.isComplete() and "not a folder" in sp.out_status.text()
    if os.geteuid() != 0:  # root can write anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        sp.out.set_text(str(ro / "run"))
        assert not sp.isComplete() and "not writable" in sp.out_status.text()
        ro.chmod(0o700)
    sp.out.set_text(str(tmp_path / "fresh"))
    assert sp.isComplete()
    devices = [sp.device.itemData(i) for i in range(sp.device.count())]
    assert devices[0] == "auto" and devices[-1] == "cpu"


def _vama_settings(qtbot, wiz, tmp_path):
    """V-AMA: source/target checked on the data page (3 target studies, 36 slices, are too few; 4 pass)."""
    from tests.core.vama.conftest import write_folder, write_manifest

    wiz.kind_page.vama_radio.setChecked(True)
    wiz.next()
    page = wiz.data_page
    assert page.vama_box.isVisibleTo(wiz) and not page.gemini_box.isVisibleTo(wiz)
    src = write_folder(tmp_path / "source", "source", 4, seed=1)
    tgt = write_manifest(tmp_path / "target", "target", 3, seed=2)  # one study too few
    page.source_edit.set_text(str(src), emit=False)
    with qtbot.waitSignal(page.checked, timeout=60000):
        page.target_edit.set_text(str(tgt))
    assert page.rows[-1][0] == "source + target" and not page.rows[-1][1] and "at least 40" in page.rows[-1][2]
    assert not page.isComplete()
    tgt = write_manifest(tmp_path / "target4", "target", 4, seed=2)
    with qtbot.waitSignal(page.checked, timeout=60000):
        page.target_edit.set_text(str(tgt))
    assert page.isComplete() and len(page.rows) == 9
    wiz.next()
    sp = wiz.settings_page
    assert sp.epochs.value() == 20 and sp.batch.value() == 8 and not sp.lr.isEnabled()
    sp.out.set_text(str(tmp_path / "adapter"))
    sp.max_steps.setValue(3)
    sp.epochs.setValue(1)
    sp.batch.setValue(4)
    sp.crop.setValue(24)
    sp.device.setCurrentIndex(sp.device.findData("cpu"))
    args, env = sp.command(resume=False)
    assert args[:2] == ["train", "vama"] and "--progress-json" in args and "--max-steps" in args
    assert args[args.index("--source") + 1] == str(src) and args[args.index("--out") + 1] == str(tmp_path / "adapter")
    return sp


def test_vama_data_page_and_command(qtbot, wizard, tmp_path):
    _vama_settings(qtbot, wizard, tmp_path)


@pytest.mark.slow
def test_vama_adapter_training(qtbot, wizard, tmp_path):
    """A real (tiny) adapter training through the wizard: 3 steps per stage (about 20 s)."""
    wiz = wizard
    _vama_settings(qtbot, wiz, tmp_path)
    with qtbot.waitSignal(wiz.run_page.runFinished, timeout=RUN_TIMEOUT) as blocker:
        run = _start_run(qtbot, wiz)
    assert blocker.args == ["done"], run.log_view.toPlainText()[-2000:]
    assert [e["event"] for e in run.events].count("epoch") == 2 and run.progress.value() == 1000
    assert set(run.loss_plot.series) == {"target total", "source total"}
    assert not run.metric_labels["dice"].isVisibleTo(wiz)
    wiz.next()
    fin = wiz.finish_page
    assert fin.model_path == str(tmp_path / "adapter") and fin.table.rowCount() > 2
    with qtbot.waitSignal(wiz.modelChosen) as chosen:
        fin.use_model()
    assert chosen.args == ["vama", str(tmp_path / "adapter")] and wiz.settings.adapter == str(tmp_path / "adapter")
    from gemini_cmr.core.models.vama import Adapter

    assert Adapter.load(tmp_path / "adapter").adapter_id


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("GEMINI_WIZARD_SCREENSHOT"), reason="set GEMINI_WIZARD_SCREENSHOT=1")
def test_run_page_screenshot(qtbot, wizard, phantoms, tmp_path, tiny_config):
    """docs/images/wizard_run.png: the run page after a short run with a few validations."""
    from PySide6.QtWidgets import QApplication

    from gemini_cmr.app.theme import apply_dark_theme

    apply_dark_theme(QApplication.instance())  # as `gemini-cmr view` does (pytest-qt made the app)
    wiz = wizard
    wiz.resize(1100, 820)
    _choose_data(qtbot, wiz, phantoms)
    wiz.next()
    config = tmp_path / "shot.json"
    config.write_text(json.dumps({**TINY, "model": {"widths": [8, 16, 32]}, "val_every": 5, "checkpoint_every": 50}))
    _settings(wiz, tmp_path / "run", config, epochs=50)
    with qtbot.waitSignal(wiz.run_page.runFinished, timeout=300_000) as blocker:
        _start_run(qtbot, wiz)
    assert blocker.args == ["done"]
    out = Path(__file__).resolve().parents[2] / "docs" / "images" / "wizard_run.png"
    assert wiz.grab().save(str(out))


def test_a_failing_run_is_reported(qtbot, wizard, phantoms, tmp_path, tiny_config):
    """Data that changes after the check (here: the manifest disappears): the CLI's one-line error is shown."""
    data = tmp_path / "data"
    shutil.copytree(phantoms, data)
    wiz = wizard
    _choose_data(qtbot, wiz, data)
    wiz.next()
    _settings(wiz, tmp_path / "run", tiny_config)
    (data / "manifest.json").unlink()
    with qtbot.waitSignal(wiz.run_page.runFinished, timeout=RUN_TIMEOUT) as blocker:
        run = _start_run(qtbot, wiz)
    assert blocker.args == ["failed"]
    assert "Training failed" in run.state_label.text() and "no manifest.json" in run.state_label.text()
    assert not run.resume_button.isVisibleTo(wiz) and not run.isComplete()
    assert wiz.button(wiz.WizardButton.BackButton).isEnabled()
