"""V-AMA domain adaptation helpers (rigid landmark alignment). The networks live in `core.models.vama`."""
