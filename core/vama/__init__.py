"""V-AMA domain adaptation helpers (rigid landmark alignment). The networks live in `core.models.vama`."""

# Fewest 2D slices (slices x phases, all studies together) per domain that `train vama` accepts (see
# docs/vama.md); one 20-phase cine of 10 slices is 200. Kept here, free of torch imports, so the CLI
# parser can show it without loading the training code.
MIN_SLICES = 40
