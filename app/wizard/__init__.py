"""The training wizard (Tools > Train a model…): trains Gemini-GAN or a V-AMA adapter through `gemini-cmr train`."""

from gemini_cmr.app.wizard.wizard import TrainWizard

__all__ = ["TrainWizard"]
