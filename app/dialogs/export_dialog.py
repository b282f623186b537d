"""Export: meshes (structures x ED/ES/all phases x STL/OBJ/PLY/VTP, world mm), SR image and labels as
NIfTI, labels for 3D Slicer and ITK-SNAP, DICOM (the SR series and segmentations, in the input's study),
phenotypes as CSV/JSON, screenshots of any view. File names and writers are `core.outputs`' (the same
as `gemini-cmr super-resolve` writes); this module only plans which files to write. Existing files are
listed before anything is written, so the window can ask before overwriting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtGui import QImage
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from gemini_cmr.core.mesh import MESH_FORMATS
from gemini_cmr.core.study import STRUCTURE_NAMES, STRUCTURES

SCREENSHOT_VIEWS = {"window": "Whole window", "lr": "LR slice", "sr": "SR slice", "reformat": "Long-axis reformat",
                    "3d": "3D surfaces"}


def save_image(image: QImage, path: Path) -> Path:
    """Write a PNG atomically (no half-written file if it fails)."""
    from gemini_cmr.core.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        if not image.save(str(tmp), "PNG"):
            raise OSError(f"could not write {path}")
    return path


@dataclass
class ExportOptions:
    folder: Path
    meshes: bool = True
    structures: tuple[str, ...] = tuple(STRUCTURES.values())
    mesh_phases: str = "ed_es"  # "ed_es" | "all"
    mesh_formats: tuple[str, ...] = ("stl",)
    nifti: bool = True
    viewer_labels: bool = True
    dicom: bool = False
    dicom_compression: str = "jpeg-ls"
    phenotypes: bool = True
    screenshots: tuple[str, ...] = ("window",)
    overwrite: bool = False


@dataclass
class ExportItem:
    path: Path
    write: Callable[[], Any] = field(repr=False)


def export_plan(options: ExportOptions, study, result, shots: dict[str, QImage]) -> list[ExportItem]:
    """The files an export writes, each with the core writer that makes it."""
    folder = Path(options.folder).expanduser()
    items: list[ExportItem] = []
    if result is None:
        writers = []
    else:
        from gemini_cmr.core import outputs

        writers = []
        if options.nifti:
            writers += [(outputs.SR_IMAGE, outputs.write_sr_image), (outputs.SR_LABELS, outputs.write_sr_labels),
                        (outputs.LR_LABELS, outputs.write_lr_labels)]
        if options.viewer_labels:
            for phase, name in outputs.slicer_phases(result):
                writers.append((name, lambda r, path, phase=phase: outputs.write_slicer_phase(r, phase, path)))
            writers += [(outputs.ITKSNAP_LABELS, lambda r, path: outputs.write_itksnap_labels(path)),
                        (outputs.ITKSNAP_WORKSPACE, lambda r, path: outputs.write_itksnap_workspace(path))]
        if options.dicom:
            writers.append((outputs.DICOM_DIR, lambda r, path, c=options.dicom_compression:
                            outputs.export_dicom(r, path.parent, c)))
        if options.phenotypes and result.phenotypes:
            from gemini_cmr.core import phenotypes as ph

            writers += [(outputs.PHENOTYPES_CSV, lambda r, path: ph.write_csv(r.phenotypes, path)),
                        (outputs.PHENOTYPES_JSON, lambda r, path: ph.write_json(r.phenotypes, path)),
                        (outputs.QC_SNAPSHOT, outputs.write_qc_snapshot)]
    for name, writer in writers:
        items.append(ExportItem(folder / name, lambda writer=writer, path=folder / name: writer(result, path)))
    if result is not None and options.meshes and options.mesh_formats:
        from gemini_cmr.core import outputs

        cache: dict[int, dict] = {}

        def surfaces(phase: int) -> dict:
            # Precomputed by the engine when available, else built by core on the worker thread.
            if phase not in cache:
                cache[phase] = outputs.phase_meshes(result, phase)
            return cache[phase]

        def mesh_writer(phase: int, structure: str, path: Path):
            def write():
                from gemini_cmr.core.mesh import write_mesh

                mesh = surfaces(phase).get(structure)
                if mesh is not None:
                    write_mesh(mesh, path)

            return write

        for phase, tag in outputs.mesh_phases(result, all_phases=options.mesh_phases == "all"):
            for s in options.structures:
                for fmt in options.mesh_formats:
                    path = outputs.mesh_path(folder, tag, s, fmt)
                    items.append(ExportItem(path, mesh_writer(phase, s, path)))
    for view in options.screenshots:
        image = shots.get(view)
        if image is None or image.isNull():
            continue
        path = folder / f"screenshot_{view}.png"

        def save(image=image, path=path):
            save_image(image, path)

        items.append(ExportItem(path, save))
    return items


class ExportDialog(QDialog):
    def __init__(self, parent: QWidget | None = None, has_result: bool = True, default_dir: str = "",
                 dicom_input: bool = False):
        super().__init__(parent)
        self.setWindowTitle("Export")
        self.setMinimumWidth(520)
        self.folder = QLineEdit(default_dir)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.folder, 1)
        row.addWidget(browse)

        self.meshes = QGroupBox("Meshes (world mm)")
        self.meshes.setCheckable(True)
        ml = QFormLayout(self.meshes)
        self.structure_checks = {}
        srow = QHBoxLayout()
        for s, name in STRUCTURE_NAMES.items():
            c = QCheckBox(name)
            c.setChecked(True)
            self.structure_checks[s] = c
            srow.addWidget(c)
        ml.addRow("Structures", srow)
        self.mesh_phases = QComboBox()
        self.mesh_phases.addItem("ED and ES", "ed_es")
        self.mesh_phases.addItem("All phases", "all")
        ml.addRow("Phases", self.mesh_phases)
        frow = QHBoxLayout()
        self.format_checks = {}
        for f in MESH_FORMATS:
            c = QCheckBox(f.upper())
            c.setChecked(f == "stl")
            self.format_checks[f] = c
            frow.addWidget(c)
        ml.addRow("Formats", frow)

        self.nifti = QCheckBox("SR image and labels, labels on the input grid (NIfTI)")
        self.viewer_labels = QCheckBox("Labels for 3D Slicer (.seg.nrrd, ED and ES) and ITK-SNAP (label file, "
                                       "workspace)")
        self.dicom = QCheckBox("DICOM: SR series and segmentations (SEG), in the input's study")
        self.dicom.setToolTip("dicom/sr: the SR series with its segmentations; dicom/lr_labels: segmentations of "
                              "the acquired images. For a study that was not read from DICOM a new study is made.")
        self.phen = QCheckBox("Phenotypes (CSV and JSON) and the review image (qc.png)")
        self.phen.setToolTip("qc.png: the ED and ES slices with the labels' outlines and the quality checks' verdict")
        for c in (self.nifti, self.viewer_labels, self.phen):
            c.setChecked(True)
        self.dicom.setChecked(dicom_input)
        shots = QGroupBox("Screenshots (PNG)")
        sl = QHBoxLayout(shots)
        self.shot_checks = {}
        for key, name in SCREENSHOT_VIEWS.items():
            c = QCheckBox(name)
            c.setChecked(key == "window")
            self.shot_checks[key] = c
            sl.addWidget(c)
        for w in (self.meshes, self.nifti, self.viewer_labels, self.dicom, self.phen):
            w.setEnabled(has_result)
            if not has_result:
                w.setToolTip("Super-resolve first")
        if not has_result:
            for w in (self.meshes, self.nifti, self.viewer_labels, self.dicom, self.phen):
                w.setChecked(False)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Export")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        form = QFormLayout()
        form.addRow("Folder", row)
        lay.addLayout(form)
        lay.addWidget(self.meshes)
        lay.addWidget(self.nifti)
        lay.addWidget(self.viewer_labels)
        lay.addWidget(self.dicom)
        lay.addWidget(self.phen)
        lay.addWidget(shots)
        lay.addWidget(buttons)

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Export folder", self.folder.text())
        if path:
            self.folder.setText(path)

    def options(self) -> ExportOptions:
        return ExportOptions(
            folder=Path(self.folder.text()).expanduser(),
            meshes=self.meshes.isChecked(),
            structures=tuple(s for s, c in self.structure_checks.items() if c.isChecked()),
            mesh_phases=self.mesh_phases.currentData(),
            mesh_formats=tuple(f for f, c in self.format_checks.items() if c.isChecked()),
            nifti=self.nifti.isChecked(),
            viewer_labels=self.viewer_labels.isChecked(),
            dicom=self.dicom.isChecked(),
            phenotypes=self.phen.isChecked(),
            screenshots=tuple(k for k, c in self.shot_checks.items() if c.isChecked()),
        )
