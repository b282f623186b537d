"""Memory needed to super-resolve a study, estimated before running, and the batch size that fits.

```python
from gemini_cmr.core.memory import estimate_memory, plan_batch
need = estimate_memory(study, model_config, batch_size=4)      # bytes
batch = plan_batch(study, model_config, n_phases, batch_size=4, device="cpu")   # or GeminiError
```
The estimate counts the arrays a run keeps (the study, the SR image and labels of every phase, the labels
back on the input grid) plus, per phase in a batch, the network input and the generator's activations
(encoder and both decoders, every resolution level; `ACTIVATION_FACTOR` feature maps per level and
branch, measured on the bundled model) and the outputs. It errs on the high side. `plan_batch` shrinks the
batch until it fits the memory available (host RAM; on CUDA the free GPU memory for the batch part) and
refuses with a one-line `GeminiError` when even one phase does not fit.
"""

from __future__ import annotations

import os

import numpy as np

from gemini_cmr.core.errors import GeminiError
from gemini_cmr.core.geometry import sr_grid
from gemini_cmr.core.io import limits
from gemini_cmr.core.models.gemini import GeminiConfig
from gemini_cmr.core.models.preprocess import depth_windows, pad_amounts

#: Feature maps alive per resolution level and network branch (encoder, 2 decoders) at the peak.
ACTIVATION_FACTOR = 5
#: The same for the "acquired-2d" generator's per-slice U-Net (measured on the bundled 8bd5874cf0be,
#: demo study, peak RSS growth of `Predictor.predict`: 65 MB per phase in bf16, 110 MB in
#: float32; with 3 the estimate is 166 MB per phase, 1.5x the float32 figure).
ACQUIRED_ACTIVATION_FACTOR = 3
#: Allocator pools, thread workspaces and the first call's one-off buffers (measured: ~40 MB on CPU).
OVERHEAD = 64 * 1024**2
#: Share of the available memory a run may plan to use.
HEADROOM = 0.8
GIB = 1024**3


def _model_section(model_config: dict) -> GeminiConfig:
    section = model_config.get("model", model_config) if isinstance(model_config, dict) else {}
    return GeminiConfig.from_dict(dict(section))


def estimate_parts(study, model_config: dict, n_phases: int | None = None) -> tuple[int, int]:
    """(fixed bytes, bytes per phase in a batch) for super-resolving `n_phases` phases of `study`."""
    cfg = _model_section(model_config)
    t = study.n_phases if n_phases is None else int(n_phases)
    d, h, w = sr_grid(study.grid).shape
    _check_sr_grid(study, d, h, w)
    hp = h + sum(pad_amounts(h, cfg.multiple))
    wp = w + sum(pad_amounts(w, cfg.multiple))
    depth = cfg.depth
    fixed = OVERHEAD + int(study.image.nbytes) + t * d * h * w * (4 + 1) + int(np.prod(study.image.shape))
    per_level = sum(width * (hp >> lvl) * (wp >> lvl) for lvl, width in enumerate(cfg.widths))
    factor = ACTIVATION_FACTOR
    outputs = depth * hp * wp * 4 * (2 + 2 * cfg.n_classes)  # input, SR image, logits and softmax
    if cfg.encoder == "shared-2d":
        per_level *= depth  # the 2D encoder and decoders run on every slice
    elif cfg.encoder == "acquired-2d":
        n_acq = max(1, min(depth, study.grid.shape[0]))
        per_level *= n_acq  # ... on every acquired (LR) slice
        factor = ACQUIRED_ACTIVATION_FACTOR
        # no SR logits (`GeminiGenerator.infer`): input, SR image and labels, and per acquired slice its
        # image and logits (and their float32 copies)
        outputs = depth * hp * wp * (4 + 4 + 1) + n_acq * hp * wp * 4 * (2 + 2 * cfg.n_classes)
    activations = 3 * factor * per_level * 4
    placed = d * h * w * 4 * 2  # placed stack and its in-plane resampling
    blend = cfg.n_classes * d * h * w * 4 if len(depth_windows(d, depth)) > 1 else 0
    return fixed, activations + outputs + placed + blend


def _check_sr_grid(study, d: int, h: int, w: int) -> None:
    """Refuse an SR grid no cardiac cine has (e.g. 1e9 mm voxels from a corrupt header) before planning:
    the plan would otherwise enumerate billions of depth windows. `core.io.load_study` refuses such
    geometry already; this guards studies built in memory."""
    limit = limits.cap("max_voxels")
    if float(d) * float(h) * float(w) > limit:
        spacing = " x ".join(f"{v:.4g}" for v in study.grid.spacing)
        raise GeminiError(f"implausible geometry: the super-resolution grid would hold {w} x {h} x {d} voxels per "
                          f"phase (input voxels {spacing} mm), more than the limit of {limit:,} "
                          f"({limits.how_to_raise('max_voxels')})", study.meta.source_path or None)


def estimate_memory(study, model_config: dict, batch_size: int = 4, n_phases: int | None = None) -> int:
    """Bytes a super-resolution run of `study` needs with batches of `batch_size` phases."""
    fixed, per_phase = estimate_parts(study, model_config, n_phases)
    t = study.n_phases if n_phases is None else int(n_phases)
    return fixed + per_phase * max(1, min(int(batch_size), max(1, t)))


def available_memory() -> int | None:
    """Host memory available to a new allocation (MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _gpu_free(device) -> int | None:
    try:
        import torch

        from gemini_cmr.core.device import is_cuda

        if not is_cuda(device) or not torch.cuda.is_available():
            return None
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    except Exception:  # no CUDA runtime, or the query failed: plan on host memory only
        return None


def plan_batch(study, model_config: dict, n_phases: int, batch_size: int = 4, device="cpu",
               available: int | None = None, gpu_free: int | None = None) -> int:
    """The largest batch (<= `batch_size`) whose estimate fits; `GeminiError` when one phase does not."""
    fixed, per_phase = estimate_parts(study, model_config, n_phases)
    host = available_memory() if available is None else available
    gpu = _gpu_free(device) if gpu_free is None else gpu_free
    batch = max(1, min(int(batch_size), max(1, int(n_phases))))
    where = study.meta.source_path or None
    if host is not None:
        on_host = fixed + (0 if gpu is not None else per_phase)
        if on_host > HEADROOM * host:
            raise GeminiError(
                f"not enough memory: super-resolving {n_phases} phase(s) of this study needs about "
                f"{on_host / GIB:.1f} GiB, {host / GIB:.1f} GiB is available (try --phases ed,es or fewer phases)",
                where)
        if gpu is None:
            batch = min(batch, max(1, int((HEADROOM * host - fixed) // per_phase)))
    if gpu is not None:
        if per_phase > HEADROOM * gpu:
            return 1  # one phase at a time; the predictor falls back to the CPU on out-of-memory
        batch = min(batch, max(1, int(HEADROOM * gpu // per_phase)))
    return batch


__all__ = ["available_memory", "estimate_memory", "estimate_parts", "plan_batch"]
