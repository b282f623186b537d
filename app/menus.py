"""The main window's commands: actions, the toolbar (with the model, adapter and device choosers), the
menu bar with its keyboard shortcuts, the status bar, and the Help boxes that describe them.

Each `build_*` function creates its widgets as attributes of the window (`win.sr_action`, `win.model_box`,
`win.recent_menu`, `win.status_label`, …) and connects them to the window's slots.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QComboBox, QLabel, QMessageBox, QProgressBar, QPushButton, QSizePolicy, QWidget

from gemini_cmr.app.theme import SURFACE_MODES, SURFACE_VIEWS
from gemini_cmr.app.viewer_state import DEVICES
from gemini_cmr.core import __version__

if TYPE_CHECKING:
    from gemini_cmr.app.main_window import MainWindow

BROWSE = "__browse__"  # the item data of a chooser's "Browse…" entry

SHORTCUTS_HELP = (
    "Up/Right, Down/Left: next/previous slice\nPgDown/PgUp: next/previous phase\nSpace: play/pause\n"
    "E / S: go to ED / ES\nL: label overlay\nR: reset window/level\nF: fit views\n"
    "2 / 4 / 3: 2-chamber / 4-chamber / oblique plane\nO: left drag draws the oblique line\nCtrl+O: open\nCtrl+R: super-resolve\n"
    "Esc: cancel\nCtrl+E: export\nCtrl+Shift+S: screenshot\n\n"
    "Mouse: left = crosshair, right-drag = window/level (double right-click resets), wheel = zoom,\n"
    "middle or Shift+left drag = pan, Ctrl+left drag = oblique plane line."
)


# --- model / adapter choosers --------------------------------------------------------------------------------
def set_combo_path(box: QComboBox, path: str) -> None:
    """Select `path` in a model/adapter chooser (added, named after the folder, when new); '' selects
    the first entry (automatic model / no adapter)."""
    if not path:
        box.setCurrentIndex(0)
        return
    idx = box.findData(path)
    if idx < 0:
        box.insertItem(box.count() - (1 if box.findData(BROWSE) >= 0 else 0), Path(path).name, path)
        idx = box.findData(path)
        box.setItemData(idx, path, Qt.ItemDataRole.ToolTipRole)
    box.setCurrentIndex(idx)


def combo_path(box: QComboBox) -> str | None:
    """The chosen path of a model/adapter chooser; None for the automatic model / no adapter."""
    v = box.currentData()
    return v if v and v != BROWSE else None


# --- toolbar, menus, status bar -------------------------------------------------------------------------------
def build_toolbar(win: MainWindow, model: str | None, adapter: str | None, device: str | None) -> None:
    """Open, Super-resolve, Cancel, the model/adapter/device choosers (`model`, `adapter`, `device`, else
    the remembered ones) and Export."""
    tb = win.addToolBar("Main")
    tb.setObjectName("mainToolbar")
    tb.setMovable(False)
    win.open_action = QAction("Open…", win)
    win.open_action.setShortcut(QKeySequence.StandardKey.Open)
    win.open_action.triggered.connect(win.open_dialog)
    tb.addAction(win.open_action)
    tb.addSeparator()
    win.sr_action = QAction("Super-resolve", win)
    win.sr_action.setShortcut(QKeySequence("Ctrl+R"))
    win.sr_action.setToolTip("Super-resolve and segment the study with the selected model (Ctrl+R)")
    win.sr_action.triggered.connect(win.super_resolve)
    tb.addAction(win.sr_action)
    tb.widgetForAction(win.sr_action).setObjectName("superResolve")
    win.cancel_action = QAction("Cancel", win)
    win.cancel_action.setShortcut(QKeySequence("Esc"))
    win.cancel_action.triggered.connect(win.cancel_task)
    tb.addAction(win.cancel_action)
    tb.addSeparator()
    tb.addWidget(QLabel(" Model "))
    win.model_box = QComboBox()
    win.model_box.setMinimumWidth(190)
    win.model_box.addItem("Automatic: phantom or ACDC model", "")  # core.resources.default_model_for
    win.adapter_box = QComboBox()
    win.adapter_box.setMinimumWidth(130)
    win.adapter_box.addItem("No adapter", "")
    win.device_box = QComboBox()
    for d in DEVICES:
        win.device_box.addItem(d, d)
    for box in (win.model_box, win.adapter_box, win.device_box):
        box.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
    set_combo_path(win.model_box, model if model is not None else win.settings.model)
    set_combo_path(win.adapter_box, adapter if adapter is not None else win.settings.adapter)
    dev = device or win.settings.device
    if win.device_box.findData(dev) < 0:
        win.device_box.addItem(dev, dev)
    win.device_box.setCurrentIndex(win.device_box.findData(dev))
    win.model_box.addItem("Browse…", BROWSE)
    win.adapter_box.addItem("Browse…", BROWSE)
    for box in (win.model_box, win.adapter_box, win.device_box):
        box.currentIndexChanged.connect(win.sync_engine_choice)
    win.sync_engine_choice()
    win.model_box.activated.connect(lambda _: win.engine_box_activated(win.model_box, "model"))
    win.adapter_box.activated.connect(lambda _: win.engine_box_activated(win.adapter_box, "adapter"))
    win.device_box.currentIndexChanged.connect(win.remember_engine_choice)
    tb.addWidget(win.model_box)
    tb.addWidget(QLabel(" Adapter "))
    tb.addWidget(win.adapter_box)
    tb.addWidget(QLabel(" Device "))
    tb.addWidget(win.device_box)
    spacer = QWidget()
    spacer.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
    tb.addWidget(spacer)
    win.export_action = QAction("Export…", win)
    win.export_action.setShortcut(QKeySequence("Ctrl+E"))
    win.export_action.triggered.connect(win.export_dialog)
    tb.addAction(win.export_action)


def _pacs_dialog():
    """app/dialogs/pacs_dialog.py, imported when first used (the PACS clients load on demand)."""
    from gemini_cmr.app.dialogs import pacs_dialog

    return pacs_dialog


def build_menus(win: MainWindow) -> None:
    """File, View (docks, display, navigation with its shortcuts, long-axis plane, 3D), Tools and Help."""
    mb = win.menuBar()
    fm = mb.addMenu("&File")
    fm.addAction(win.open_action)
    open_folder = fm.addAction("Open Folder…")
    open_folder.triggered.connect(win.open_folder_dialog)
    win.add_la_action = fm.addAction("Add Long-Axis Cine…")
    win.add_la_action.setToolTip("Add a 2-, 3- or 4-chamber cine of this study (NIfTI or DICOM): shown beside the "
                                 "short axis and used by the next Super-resolve")
    win.add_la_action.triggered.connect(win.add_long_axis_dialog)
    win.pacs_open_action = fm.addAction("Open from PACS…")
    win.pacs_open_action.triggered.connect(lambda: _pacs_dialog().open_from_pacs(win))
    win.recent_menu = fm.addMenu("Open &Recent")
    rebuild_recent_menu(win)
    fm.addSeparator()
    fm.addAction(win.export_action)
    win.pacs_send_action = fm.addAction("Send to PACS…")
    win.pacs_send_action.setToolTip("Send the SR series and segmentations (DICOM) to a PACS")
    win.pacs_send_action.triggered.connect(lambda: _pacs_dialog().send_to_pacs(win))
    shot = fm.addAction("Save Screenshot…")
    shot.setShortcut(QKeySequence("Ctrl+Shift+S"))
    shot.triggered.connect(win.screenshot_dialog)
    fm.addSeparator()
    quit_action = fm.addAction("&Quit")
    quit_action.setShortcut(QKeySequence.StandardKey.Quit)
    quit_action.triggered.connect(win.close)

    vm = mb.addMenu("&View")
    vm.addAction(win.study_dock.toggleViewAction())
    vm.addAction(win.phen_dock.toggleViewAction())
    vm.addSeparator()
    win.overlay_action = vm.addAction("Label Overlay")
    win.overlay_action.setCheckable(True)
    win.overlay_action.setChecked(True)
    win.overlay_action.setShortcut(QKeySequence("L"))
    win.overlay_action.toggled.connect(win.overlay_check.setChecked)
    win.overlay_check.toggled.connect(win.overlay_action.setChecked)
    wl = vm.addAction("Reset Window/Level")
    wl.setShortcut(QKeySequence("R"))
    wl.triggered.connect(win.reset_window_level)
    fit = vm.addAction("Fit Views")
    fit.setShortcut(QKeySequence("F"))
    fit.triggered.connect(win.fit_views)
    vm.addSeparator()
    win.play_action = vm.addAction("Play / Pause")
    win.play_action.setShortcut(QKeySequence(Qt.Key.Key_Space))
    win.play_action.triggered.connect(win.play_button.toggle)
    for text, keys, fn in (
        ("Next Slice", ("Up", "Right"), lambda: win.step_slice(+1)),
        ("Previous Slice", ("Down", "Left"), lambda: win.step_slice(-1)),
        ("Next Phase", ("PgDown",), win.next_phase),
        ("Previous Phase", ("PgUp",), lambda: win.set_phase(win.state.previous_phase())),
        ("Go to ED", ("E",), lambda: win.goto_ed_es("ed")),
        ("Go to ES", ("S",), lambda: win.goto_ed_es("es")),
    ):
        a = vm.addAction(text)
        a.setShortcuts([QKeySequence(k) for k in keys])
        a.triggered.connect(fn)
    vm.addSeparator()
    planes = vm.addMenu("Long-axis Plane")
    group = QActionGroup(win)
    for key, text, sc in (("4ch", "4-chamber", "4"), ("2ch", "2-chamber", "2"), ("oblique", "Oblique", "3")):
        a = planes.addAction(text)
        a.setShortcut(QKeySequence(sc))
        group.addAction(a)
        a.triggered.connect(lambda _=False, k=key: win.reformat_view.select_plane(k))
    draw = planes.addAction("Draw Oblique Line with Left Drag")
    draw.setCheckable(True)
    draw.setShortcut(QKeySequence("O"))
    draw.setToolTip("Left drag on a short-axis view draws the oblique plane (as Ctrl + drag does)")
    draw.toggled.connect(win.set_line_mode)
    if win.with_3d:
        modes = vm.addMenu("3D Mode")
        for key, text in SURFACE_MODES:
            a = modes.addAction(text)
            a.triggered.connect(lambda _=False, k=key: win.surface_view and win.surface_view.set_mode(k))
        views = vm.addMenu("3D Camera")
        for key, text in SURFACE_VIEWS:
            a = views.addAction(text)
            a.triggered.connect(lambda _=False, k=key: win.surface_view and win.surface_view.standard_view(k))

    tm = mb.addMenu("&Tools")
    tm.addAction(win.sr_action)
    tm.addAction(win.cancel_action)
    win.motion_action = tm.addAction("Correct Slice Motion")
    win.motion_action.setCheckable(True)
    win.motion_action.setChecked(win.settings.motion_correction)
    win.motion_action.setToolTip("Estimate the in-plane shift of every acquired slice (one breath-hold each) and "
                                 "undo it before super-resolving (the command line's --no-motion-correction "
                                 "turns it off); applies to the next Super-resolve")
    win.motion_action.toggled.connect(lambda on: setattr(win.settings, "motion_correction", on))
    win.tta_action = tm.addAction("Test-Time Augmentation at ED/ES")
    win.tta_action.setCheckable(True)
    win.tta_action.setChecked(win.settings.tta)
    win.tta_action.setToolTip("ED and ES labels (the volumes, EF and mass) from the class scores averaged over "
                              "the image and its in-plane mirrorings (the command line's --tta-ed-es): "
                              "slightly more accurate, about 1.4x the network time of a 20-phase cine; "
                              "applies to the next Super-resolve")
    win.tta_action.toggled.connect(lambda on: setattr(win.settings, "tta", on))
    tm.addSeparator()
    choose_model = tm.addAction("Choose Model…")
    choose_model.triggered.connect(lambda: win.browse_engine_path(win.model_box, "model"))
    choose_adapter = tm.addAction("Choose Adapter…")
    choose_adapter.triggered.connect(lambda: win.browse_engine_path(win.adapter_box, "adapter"))
    tm.addSeparator()
    win.train_action = tm.addAction("Train a Model…")
    win.train_action.triggered.connect(win.open_training_wizard)

    hm = mb.addMenu("&Help")
    keys = hm.addAction("Keyboard Shortcuts")
    keys.triggered.connect(lambda: show_shortcuts(win))
    win.model_card_action = hm.addAction("About the Model…")
    win.model_card_action.triggered.connect(lambda: show_model_card(win))
    about = hm.addAction("About Gemini CMR")
    about.triggered.connect(lambda: show_about(win))


def rebuild_recent_menu(win: MainWindow) -> None:
    """File > Open Recent from the remembered files (and Clear Recent); disabled when there are none."""
    win.recent_menu.clear()
    recent = win.settings.recent_files()
    for i, path in enumerate(recent):
        a = win.recent_menu.addAction(f"&{i + 1}  {path}")
        a.triggered.connect(lambda _=False, p=path: win.open_path(p))
    if recent:
        win.recent_menu.addSeparator()
        clear = win.recent_menu.addAction("Clear Recent")
        clear.triggered.connect(lambda: (win.settings.clear_recent(), rebuild_recent_menu(win)))
    win.recent_menu.setEnabled(bool(recent))


def build_status_bar(win: MainWindow) -> None:
    """The status text, the cursor position, and a task's progress bar and Cancel button."""
    sb = win.statusBar()
    win.status_label = QLabel("Ready")
    win.status_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)  # long text never widens
    win.progress_bar = QProgressBar()
    win.progress_bar.setRange(0, 1000)
    win.progress_bar.setMaximumWidth(280)
    win.progress_bar.setVisible(False)
    win.cancel_button = QPushButton("Cancel")
    win.cancel_button.setVisible(False)
    win.cancel_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    win.cancel_button.clicked.connect(win.cancel_task)
    win.position_label = QLabel("")
    win.position_label.setObjectName("muted")
    sb.addWidget(win.status_label, 1)
    sb.addPermanentWidget(win.position_label)
    sb.addPermanentWidget(win.progress_bar)
    sb.addPermanentWidget(win.cancel_button)


# --- Help -----------------------------------------------------------------------------------------------------
def show_about(parent: QWidget) -> None:
    QMessageBox.about(
        parent, "About Gemini CMR",
        f"<b>Gemini CMR</b> {__version__}<br>Joint super-resolution and 3D segmentation of cardiac cine "
        "MRI (Gemini-GAN, V-AMA).<br><br>Research software: not for clinical diagnosis.",
    )


def show_model_card(win: MainWindow) -> QWidget | None:
    """The card of the model the next Super-resolve would use (non-modal); a model that cannot be read is
    a warning naming its file."""
    from gemini_cmr.app.dialogs.model_card import ModelCardDialog, model_for_card
    from gemini_cmr.core.errors import GeminiError

    path, why = model_for_card(combo_path(win.model_box), win.study)
    try:
        dialog = ModelCardDialog(path, why, win)
    except GeminiError as exc:
        QMessageBox.warning(win, "About the Model", str(exc))
        return None
    dialog.show()
    win.model_card_dialog = dialog
    return dialog


def show_shortcuts(parent: QWidget) -> None:
    QMessageBox.information(parent, "Keyboard shortcuts", SHORTCUTS_HELP)
