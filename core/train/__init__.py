"""Training: paired datasets on the SR grid (`data`), the generic loop (`loop`), Gemini-GAN (`gemini`)."""
