"""Wizard page 1: what to train (Gemini-GAN on paired data, a model on real studies with labels -
fine-tuning the shipped one by default -, or a V-AMA adapter)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtWidgets import QButtonGroup, QRadioButton, QVBoxLayout, QWizardPage

from gemini_cmr.app.wizard.common import GEMINI, REAL, VAMA, muted

if TYPE_CHECKING:
    from gemini_cmr.app.wizard.wizard import TrainWizard


class KindPage(QWizardPage):
    def __init__(self, wizard: TrainWizard):
        super().__init__()
        self.wiz = wizard
        self.setTitle("What do you want to train?")
        self.setSubTitle("Both run the same training code as the command line (gemini-cmr train).")
        lay = QVBoxLayout(self)
        self.gemini_radio = QRadioButton("Gemini-GAN: super-resolution + 3D segmentation, from paired LR/HR data")
        self.vama_radio = QRadioButton("V-AMA adapter: make studies from a new scanner/domain work with a "
                                       "Gemini-GAN model")
        self.real_radio = QRadioButton("Real studies with labels: fine-tune the shipped model on your own "
                                       "cohort (or train from scratch)")
        self.group = QButtonGroup(self)
        self.group.addButton(self.gemini_radio)
        self.group.addButton(self.real_radio)
        self.group.addButton(self.vama_radio)
        self.gemini_radio.setChecked(True)
        lay.addWidget(self.gemini_radio)
        lay.addWidget(muted("Needs subjects with a low-resolution (LR) cine stack and its high-resolution (HR) "
                             "image and labels, listed in a manifest.json (the paired layout written by "
                             "gemini-cmr synth). You can generate phantoms on the next page."))
        lay.addSpacing(12)
        lay.addWidget(self.real_radio)
        lay.addWidget(muted("Cine studies with manual labels on the acquired slices: ACDC, M&Ms or UK Biobank "
                             "layouts, NIfTI image + label pairs, or DICOM series with label NIfTI files; labels "
                             "may cover only some structures or slices. Starts from the shipped research weights "
                             "(gemini-acdc); a held-out part of your cohort shows the model before and after."))
        lay.addSpacing(12)
        lay.addWidget(self.vama_radio)
        lay.addWidget(muted("Needs LR studies of the new scanner (source, labels optional) and LR studies of "
                             "the domain Gemini-GAN was trained on (target): a paired dataset folder, a folder of "
                             "NIfTI studies or ACDC-style subject folders, at least 4 studies each."))
        lay.addStretch(1)
        for radio in (self.gemini_radio, self.real_radio):
            radio.toggled.connect(lambda _: self.wiz.kind_changed())

    @property
    def kind(self) -> str:
        return GEMINI if self.gemini_radio.isChecked() else REAL if self.real_radio.isChecked() else VAMA

    def nextId(self) -> int:  # noqa: N802
        from gemini_cmr.app.wizard.wizard import PAGE_DATA, PAGE_REAL_DATA

        return PAGE_REAL_DATA if self.kind == REAL else PAGE_DATA
