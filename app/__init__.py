"""Gemini CMR desktop app (PySide6): views and workers over the `core` engine."""
