"""Wizard page 1: what to train (Gemini-GAN, or a V-AMA adapter)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtWidgets import QButtonGroup, QRadioButton, QVBoxLayout, QWizardPage

from gemini_cmr.app.wizard.common import GEMINI, VAMA, muted

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
        self.group = QButtonGroup(self)
        self.group.addButton(self.gemini_radio)
        self.group.addButton(self.vama_radio)
        self.gemini_radio.setChecked(True)
        lay.addWidget(self.gemini_radio)
        lay.addWidget(muted("Needs subjects with a low-resolution (LR) cine stack and its high-resolution (HR) "
                             "image and labels, listed in a manifest.json (the paired layout written by "
                             "gemini-cmr synth). You can generate phantoms on the next page."))
        lay.addSpacing(12)
        lay.addWidget(self.vama_radio)
        lay.addWidget(muted("Needs LR studies of the new scanner (source, labels optional) and LR studies of "
                             "the domain Gemini-GAN was trained on (target): a paired dataset folder, a folder of "
                             "NIfTI studies or ACDC-style subject folders, at least 4 studies each."))
        lay.addStretch(1)
        self.gemini_radio.toggled.connect(lambda _: self.wiz.kind_changed())

    @property
    def kind(self) -> str:
        return GEMINI if self.gemini_radio.isChecked() else VAMA
