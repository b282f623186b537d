"""Gemini CMR engine: study I/O, geometry, phantoms, Gemini-GAN, V-AMA, metrics.

This package must never import Qt or pyvistaqt (checked by tests/core/test_boundary.py).
"""

__version__ = "0.1.0"
