"""V-AMA domain adaptation helpers (rigid landmark alignment). The networks live in `core.models.vama`."""

# Fewest studies per domain that `train vama` accepts (see docs/vama.md). Kept here, free of torch
# imports, so the CLI parser can show it without loading the training code.
MIN_STUDIES = 4
