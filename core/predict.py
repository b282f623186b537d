"""The Gemini-GAN predictor: load a model once, super-resolve and segment whole cines.

```python
from gemini_cmr.core.predict import Predictor
p = Predictor.load(path=None, device="auto")        # None = the bundled model
pred = p.predict(study, phases=None, progress=None, cancel=None)
```
For every requested phase the LR stack is placed on `sr_grid(study.grid)` by nearest-slice placement,
divided by the cine's normalisation scale (99.5th percentile of the LR image), zero-padded in-plane to a
multiple of 16 (the whole field of view is processed, no crop) and centred in the network depth D (slabs
deeper than D are covered by overlapping windows blended with triangular weights: SR image averaged,
class probabilities averaged then argmax). Phases are batched. Models with `first_phase_context` get the
cine's first phase, placed and normalised the same way, beside every phase. Runs under `torch.inference_mode` on
`inference_copy(model)` (BatchNorm folded into the convolutions, channels_last on the CPU).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gemini_cmr.core.device import auto_precision, resolve_device
from gemini_cmr.core.errors import Cancelled, StudyError
from gemini_cmr.core.geometry import inplane_nearest, place_on_sr_grid, place_on_sr_grid_torch, sr_grid
from gemini_cmr.core.memory import plan_batch
from gemini_cmr.core.models.blocks import Down, MaxPool2x2, channels_last_convs
from gemini_cmr.core.models.gemini import TTA_FLIPS, class_argmax
from gemini_cmr.core.models.preprocess import (
    DEFAULT_PERCENTILE,
    depth_windows,
    intensity_scale,
    pad_amounts,
    window_weights,
)
from gemini_cmr.core.models.store import LoadedModel, load_model
from gemini_cmr.core.parallel import numpy_hugepage_hint_off, release_free_memory, tune_malloc
from gemini_cmr.core.study import Grid, Study

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
Cancel = Callable[[], bool]


@dataclass
class Prediction:
    sr_grid: Grid
    phases: list[int]
    sr_image: np.ndarray  # (T', D, H, W) float32, input intensity units
    sr_labels: np.ndarray  # (T', D, H, W) uint8
    model_id: str
    scale: float = 1.0  # intensity normalisation divisor used
    timings: dict[str, float] = field(default_factory=dict)
    # Heart region, SR in-plane indices (y0, y1, x0, x1), when the model asks for region-of-interest
    # inference (config "inference": {"roi_mm": ...}): the box whose LR pixels set the intensity scale;
    # None = whole field of view.
    roi: tuple[int, int, int, int] | None = None
    # The part of `roi` the network ran on (config "inference": {"roi_margin_mm": ...}: the heart and a
    # margin); the same as `roi` without a margin.
    net_roi: tuple[int, int, int, int] | None = None
    # What the heart-finding pass decided that the user should know (a heart found again where the cine
    # beats, no heart found): the engine passes these on as the run's warnings.
    notes: list[str] = field(default_factory=list)


_DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


def run_stacks(model: torch.nn.Module, placed: np.ndarray | torch.Tensor, device: torch.device,
               precision: str = "float32", scale: float = 1.0,
               out: tuple[np.ndarray, np.ndarray] | None = None,
               flips: Sequence[tuple[int, ...]] = (), labels_only: bool = False,
               context: np.ndarray | torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Run the generator on stacks already on the SR grid.

    placed (b, Dz, H, W) float (NumPy, or a tensor e.g. already on the device), divided by `scale` for the
    network -> SR image (b, Dz, H, W) float32
    multiplied back by `scale`, labels uint8; written into `out` = (image, labels) arrays when given (e.g.
    views of the whole cine's outputs) and returned. In-plane zero padding to the network's multiple,
    depth centred or covered by blended windows. With one window (the usual case) normalisation, padding,
    cropping and rescaling happen on the device and the results are copied once into `out`.
    `flips`: test-time augmentation (`core.models.gemini.TTA_FLIPS`): class scores averaged over the input's
    in-plane mirrorings too (1 + len(flips) network passes). `labels_only`: only the labels are wanted
    (`GeminiGenerator.infer(labels_only=True)`: acquired-2d models skip the image decoder, and the image
    written is a placeholder). `context` (1 or b, Dz, H, W), for models with `first_phase_context`: the
    cine's first phase placed like `placed` (same units, divided by the same `scale`).
    """
    cfg = model.config
    takes_context = getattr(cfg, "first_phase_context", False)  # baselines' configs have no such field
    if takes_context and context is None:
        raise ValueError("this model takes the cine's first phase as context: pass context=")
    if not takes_context:
        context = None
    depth, mult = cfg.depth, cfg.multiple
    b, dz, h, w = placed.shape
    (py0, py1), (px0, px1) = pad_amounts(h, mult), pad_amounts(w, mult)
    hp, wp = h + py0 + py1, w + px0 + px1
    windows = depth_windows(dz, depth)
    img_out, lab_out = out if out is not None else (np.empty((b, dz, h, w), np.float32),
                                                    np.empty((b, dz, h, w), np.uint8))
    dtype = _DTYPES[precision]
    n = min(depth, dz)
    inv = 1.0 / float(scale)

    def network_input(start: int, off: int, stacks=placed) -> torch.Tensor:
        if isinstance(stacks, torch.Tensor):  # already on the device (`place_on_sr_grid_torch`)
            src = stacks[:, start:start + n].to(device, torch.float32)
        else:
            src = torch.from_numpy(np.ascontiguousarray(stacks[:, start:start + n], dtype=np.float32))
            if device.type == "cuda":
                src = src.pin_memory().to(device, non_blocking=True)
        x = torch.zeros((len(stacks), depth, hp, wp), dtype=torch.float32, device=device)
        torch.mul(src, inv, out=x[:, off:off + n, py0:py0 + h, px0:px0 + w])
        return x

    def context_input(start: int, off: int) -> dict:
        return {} if context is None else {"context": network_input(start, off, context)}

    with torch.inference_mode():
        if len(windows) == 1:
            start, off = windows[0]
            x = network_input(start, off)
            ctx = context_input(start, off)
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                if hasattr(model, "infer"):  # labels straight from the model (no full logits for acquired-2d)
                    kwargs = {**({"flips": flips} if flips else {}), **({"labels_only": True} if labels_only else {}),
                              **ctx}
                    img, lab = model.infer(x, **kwargs)
                else:
                    img, logits = model(x, **ctx)
                    lab = class_argmax(logits)
            img = img[:, off:off + n, py0:py0 + h, px0:px0 + w].float()
            if scale != 1.0:
                img = img * float(scale)
            torch.from_numpy(img_out).copy_(img)
            torch.from_numpy(lab_out).copy_(lab[:, off:off + n, py0:py0 + h, px0:px0 + w])
            return img_out, lab_out
        wts = window_weights(depth)
        img_acc = np.zeros((b, dz, h, w), np.float32)
        prob_acc = np.zeros((b, cfg.n_classes, dz, h, w), np.float32)
        wsum = np.zeros(dz, np.float32)
        for start, off in windows:
            x = network_input(start, off)
            ctx = context_input(start, off)
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                img, logits = model.forward_tta(x, flips, **ctx) if flips else model(x, **ctx)
            img = img[:, off:off + n, py0:py0 + h, px0:px0 + w].float().cpu().numpy()
            logits = logits[:, :, off:off + n, py0:py0 + h, px0:px0 + w].float()
            ww = wts[off:off + n]
            img_acc[:, start:start + n] += img * ww[:, None, None]
            wsum[start:start + n] += ww
            prob_acc[:, :, start:start + n] += torch.softmax(logits, 1).cpu().numpy() * ww[:, None, None]
    lab_out[:] = class_argmax(torch.from_numpy(prob_acc)).numpy()
    img_out[:] = img_acc * (np.float32(scale) / wsum[:, None, None])
    return img_out, lab_out


def inference_copy(model: torch.nn.Module, channels_last: bool = True) -> torch.nn.Module:
    """A copy of the generator for inference: every Conv2d -> BatchNorm2d pair (eval statistics)
    folded into one convolution with bias (the BN becomes Identity), in channels_last memory format, and
    the 2x2 max pools as `MaxPool2x2` (same values, no argmax indices).
    Same outputs up to float rounding (~1e-6); 1.6x faster on the 2-core CPU (oneDNN prefers NHWC).
    channels_last=False keeps the weights contiguous (NCHW): on an H200 the slices-as-channels network ran
    1.45x faster that way (benchmarks/bench_gpu_variants.py), so the predictor uses it on CUDA
    for that family (`Predictor.channels_last`)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fast = copy.deepcopy(model).eval()
    for mod in fast.modules():
        if not isinstance(mod, torch.nn.Sequential):
            continue
        items = list(mod)
        for i in range(len(items) - 1):
            conv, bn = items[i], items[i + 1]
            if (isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d)
                    and bn.track_running_stats and bn.running_mean is not None):
                mod[i] = fuse_conv_bn_eval(conv, bn)
                mod[i + 1] = torch.nn.Identity()
    if channels_last:  # 4D weights only: the per-slice generators also hold Conv3d (5D) weights
        channels_last_convs(fast)
        for mod in fast.modules():
            if isinstance(mod, Down):  # CPU: its MaxPool2d(2) as 4-phase maxima
                mod[0] = MaxPool2x2()
    return fast


# Phases per network call when the caller does not say; `plan_batch` shrinks it to what memory holds.
# 4 on the CPU (larger batches were not faster), 2 for acquired-2d models with a heart box (the real-study
# models: benchmarks/bench_batch.py on the Sunnybrook cine, x0.93 network time and 0.81x peak RSS against 4;
# the phantom model's demo cine took x1.045 with 2). CUDA, by model family (H200, benchmarks/
# bench_gpu_variants.py): acquired-2d 20 (a whole demo cine in one call: 0.027 s against 0.046-0.051 s with
# batch 4, 1.6 GB peak GPU memory); slices-as-channels 4 (batch 20 took 0.29 s against 0.17-0.21 s per
# demo cine).
DEFAULT_BATCH = {"cpu": 4, "cuda": 4}
DEFAULT_BATCH_ACQUIRED = {"cpu": 4, "cuda": 20}
DEFAULT_BATCH_ACQUIRED_ROI = {"cpu": 2, "cuda": 20}


def default_batch(encoder: str, config: dict, device_type: str) -> int:
    """Phases per network call for a model (`DEFAULT_BATCH*`) when the caller does not say."""
    if encoder != "acquired-2d":
        return DEFAULT_BATCH.get(device_type, 4)
    roi = (config.get("inference") or {}).get("roi_mm")
    return (DEFAULT_BATCH_ACQUIRED_ROI if roi else DEFAULT_BATCH_ACQUIRED).get(device_type, 4)


class Predictor:
    def __init__(self, loaded: LoadedModel, device: torch.device, batch_size: int | None = None,
                 precision: str = "auto"):
        self.loaded = loaded
        self.model = loaded.generator
        self.device = device = torch.device(device)
        if batch_size is None:
            batch_size = default_batch(self.model.config.encoder, loaded.config, device.type)
        self.batch_size = max(1, int(batch_size))
        if precision == "auto":
            precision = auto_precision(device)
        if precision not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"unknown precision {precision!r}")
        self.precision = precision
        self._fast: tuple[tuple, torch.nn.Module] | None = None
        # Where the LR phases are placed on the SR grid: "auto" = on the device for CUDA
        # (`place_on_sr_grid_torch`: the LR cine is copied, not the 5x larger placed stacks), on the host
        # (`place_on_sr_grid`) for the CPU; "device" / "host" force one (benchmarks/bench_gpu_variants.py).
        self.placement = "auto"
        # CUDA: the SR image and labels in pinned host memory (`_host_array`); False: pageable.
        self.pinned_outputs = True
        # Memory format of the inference copy: None = channels_last on the CPU (oneDNN, 1.6x) and for
        # acquired-2d models on CUDA too (cuDNN's NHWC kernels, no layout conversions and a faster bilinear
        # upsampling: 1.7x on an H200), NCHW for slices-as-channels models on CUDA (1.45x faster there).
        self.channels_last: bool | None = None
        tune_malloc()  # large temporaries reuse mapped memory (core.parallel.tune_malloc)
        numpy_hugepage_hint_off()  # fresh large arrays fault in faster (core.parallel)

    def _inference_model(self) -> torch.nn.Module:
        """`inference_copy(self.model)`, rebuilt when the model, its device or the layout changes."""
        on_cpu = next(self.model.parameters()).device.type == "cpu"
        cl = self.channels_last
        if cl is None:
            cl = on_cpu or self.model.config.encoder == "acquired-2d"
        key = (id(self.model), str(next(self.model.parameters()).device), bool(cl))
        if self._fast is None or self._fast[0] != key:
            self._fast = (key, inference_copy(self.model, channels_last=bool(cl)))
        return self._fast[1]

    @classmethod
    def load(cls, path: str | Path | None = None, device: str | torch.device = "auto",
             batch_size: int | None = None, precision: str = "auto") -> Predictor:
        dev = resolve_device(device)
        return cls(load_model(path, dev), dev, batch_size, precision)

    @property
    def model_id(self) -> str:
        return self.loaded.model_id

    @property
    def config(self) -> dict:
        return self.loaded.config

    @property
    def depth(self) -> int:
        return self.model.config.depth

    def _host_array(self, shape: tuple[int, ...], dtype: torch.dtype) -> np.ndarray:
        """An output array of the cine; on CUDA in page-locked (pinned) memory, which the network's results
        are copied into directly (on an H200 the copy back to pageable memory was half of the network
        time: 45 of 85 ms per demo cine, benchmarks/bench_gpu_variants.py --profile).
        The array keeps its tensor alive; freed blocks return to torch's pinned-memory cache."""
        if self.device.type == "cuda" and self.pinned_outputs:
            try:
                return torch.empty(shape, dtype=dtype, pin_memory=True).numpy()
            except RuntimeError as exc:  # pinning refused (limits): ordinary memory, only slower
                log.warning("pinned output memory not available (%s): using pageable memory", exc)
        return np.empty(shape, dtype=torch.empty((), dtype=dtype).numpy().dtype)

    def _run_safe(self, placed: np.ndarray, scale: float = 1.0,
                  out: tuple[np.ndarray, np.ndarray] | None = None,
                  flips: Sequence[tuple[int, ...]] = (), labels_only: bool = False,
                  context: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """`run_stacks` in batches of `batch_size` with CUDA out-of-memory recovery: halve the batch (kept
        for later batches), and with a single phase still too large move the model to the CPU for good,
        with a warning. `flips`, `labels_only`, `context` (one stack for every phase): `run_stacks`'s."""
        if out is None:
            out = (np.empty(placed.shape, np.float32), np.empty(placed.shape, np.uint8))
        n = self.batch_size
        if len(placed) > n:
            for i in range(0, len(placed), n):
                self._run_safe(placed[i:i + n], scale, (out[0][i:i + n], out[1][i:i + n]), flips, labels_only,
                               context)
            return out
        try:
            return run_stacks(self._inference_model(), placed, self.device, self.precision, scale, out, flips,
                              labels_only, context)
        except torch.cuda.OutOfMemoryError:
            if self.device.type != "cuda":
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if len(placed) > 1:
                self.batch_size = max(1, len(placed) // 2)
                log.warning("CUDA out of memory with %d phases per batch: retrying with %d",
                            len(placed), self.batch_size)
                return self._run_safe(placed, scale, out, flips, labels_only, context)
            log.warning("CUDA out of memory with one phase per batch: falling back to the CPU (slower)")
            self.model.to("cpu")
            self.device = torch.device("cpu")
            return run_stacks(self._inference_model(), placed, self.device, self.precision, scale, out, flips,
                              labels_only, context)

    def predict(
        self,
        study: Study,
        phases: Sequence[int] | None = None,
        progress: Progress | None = None,
        cancel: Cancel | None = None,
        roi: tuple[int, int, int, int] | None = None,
        tta: bool = False,
        net_roi: tuple[int, int, int, int] | None = None,
        first: Sequence[int] = (),
        on_chunk: Callable[[Prediction, list[int]], None] | None = None,
        shifts_mm: np.ndarray | None = None,
    ) -> Prediction:
        """SR image and labels of `phases` (default all) of `study` on its SR grid.

        `roi`: for models with heart-region inference (config `inference.roi_mm`), the SR in-plane box
        (rows y0:y1, columns x0:x1) an earlier prediction of the same study found (`Prediction.roi`), e.g.
        the motion-correction pass before its slices were shifted by a few millimetres: the whole-field
        pass that finds the heart is skipped and the box reused (its intensity scale is taken again from
        this study). Ignored by models without heart-region inference. `net_roi`: the part of `roi` the
        network ran on then (`Prediction.net_roi`), reused with it; without it the network runs on all of `roi`.
        `first`: phases to compute before the others (e.g. ED and ES, for a preview); the outputs keep the
        order of `phases`. `on_chunk(partial, done)`: called on this thread after each batch of phases with
        the `Prediction` being filled in place and the phases whose rows of it are final so far (a preview:
        the other rows are not yet meaningful, and the arrays are the ones returned at the end).
        `tta`: test-time augmentation, the labels from class scores averaged over the input and its three
        in-plane mirrorings (`core.models.gemini.TTA_FLIPS`: 4x the network time; the SR image is the
        unmirrored pass's). `shifts_mm` (Z, 2): per-slice breath-hold shifts (`core.motion`) undone as the
        stack is placed on the SR grid (`core.geometry.place_on_sr_grid`): the prediction of the corrected
        stack with one in-plane interpolation; outside the network box the SR image is the corrected stack.
        The intensity scale stays the acquired pixels' (the same pixels, moved by a few millimetres).
        The heap memory the network's temporaries leave behind is given back at the end
        (`core.parallel.release_free_memory`)."""
        try:
            return self._predict(study, phases, progress, cancel, roi, TTA_FLIPS if tta else (), net_roi, first,
                                 on_chunk, shifts_mm)
        finally:
            release_free_memory()

    def _predict(self, study: Study, phases: Sequence[int] | None, progress: Progress | None,
                 cancel: Cancel | None, roi: tuple[int, int, int, int] | None,
                 flips: Sequence[tuple[int, ...]] = (), net_roi: tuple[int, int, int, int] | None = None,
                 first: Sequence[int] = (), on_chunk: Callable[[Prediction, list[int]], None] | None = None,
                 shifts: np.ndarray | None = None) -> Prediction:
        t0 = time.perf_counter()
        study.validate()
        n_t = study.n_phases
        phase_list = list(range(n_t)) if phases is None else [int(p) for p in phases]
        bad = [p for p in phase_list if not 0 <= p < n_t]
        if bad or not phase_list:
            raise StudyError(f"invalid phases {bad or phase_list} for a cine with {n_t} phases",
                             study.meta.source_path or None)
        lr = study.grid
        sr = sr_grid(lr)
        norm = self.config.get("normalisation", {})
        pct = float(norm.get("percentile", DEFAULT_PERCENTILE))
        dz, h, w = sr.shape
        timings = {"preprocess": 0.0, "model": 0.0}
        # Refuse before allocating when the study cannot fit; shrink the batch when it can.
        bs = plan_batch(study, self.config, len(phase_list), self.batch_size, self.device)
        sr_image = self._host_array((len(phase_list), dz, h, w), torch.float32)
        sr_labels = self._host_array((len(phase_list), dz, h, w), torch.uint8)
        chunks = chunk_rows(phase_list, bs, first)
        n_chunks = len(chunks)
        if progress:
            progress(0.0, "super-resolving")
        roi_mm = float((self.config.get("inference") or {}).get("roi_mm") or 0)
        # `scale`: the network's intensity divisor, the heart box's (then the whole cine's is not needed) or
        # the whole cine's
        hint, roi, scale, net = roi, None, None, None
        notes: list[str] = []
        # models with `first_phase_context`: the first phase on the SR grid, beside every phase
        context = place_on_sr_grid(study.image[[0]], lr, sr, shifts_mm=shifts) \
            if self.model.config.first_phase_context else None
        if roi_mm > 0:
            tr = time.perf_counter()
            if hint is not None and _box_fits(hint, sr):
                roi = tuple(int(v) for v in hint)
                scale = self._roi_scale(study, sr, roi, None, norm)
                if net_roi is not None and _box_fits(net_roi, sr) and _box_within(net_roi, roi):
                    net = tuple(int(v) for v in net_roi)
            else:
                roi, net, scale = self._heart_roi(study, sr, phase_list[0], intensity_scale(study.image, pct),
                                                  roi_mm, norm, context, notes, shifts)
            net = net or roi
            timings["roi"] = time.perf_counter() - tr
        if scale is None:
            scale = intensity_scale(study.image, pct)
        where = self.placement if self.placement != "auto" else \
            ("device" if self.device.type == "cuda" else "host")
        on_device = where == "device" and roi is None and min(lr.shape[1:]) > 1
        finished: list[int] = []
        for ci, out in enumerate(chunks):  # `out`: this chunk's rows of the outputs (a slice, or a list)
            if cancel is not None and cancel():
                raise Cancelled("super-resolution cancelled")
            chunk = phase_list[out] if isinstance(out, slice) else [phase_list[i] for i in out]
            tp = time.perf_counter()
            placed = None
            if on_device:  # the LR phases go to the device and are placed there (5x less to copy)
                try:
                    src = torch.from_numpy(np.ascontiguousarray(study.image[chunk], dtype=np.float32))
                    placed = place_on_sr_grid_torch(src.to(self.device), lr, sr, shifts)
                    if self.device.type == "cuda":
                        torch.cuda.synchronize(self.device)
                except torch.cuda.OutOfMemoryError:
                    log.warning("out of GPU memory placing %d phase(s) on the SR grid: placing on the host",
                                len(chunk))
                    on_device = False
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()
            if placed is None:  # (b, dz, h, w), input units, placed into this chunk's rows of the SR image
                placed = place_on_sr_grid(study.image[chunk], lr, sr, out=sr_image[out], shifts_mm=shifts)
            timings["preprocess"] += time.perf_counter() - tp
            tm = time.perf_counter()
            if roi is None:  # written straight into this chunk's part of the outputs (the network's input
                # is copied before its output is written, so the placed stack may be the output itself)
                img, lab = self._run_safe(placed, scale, (sr_image[out], sr_labels[out]), flips, context=context)
                if not np.may_share_memory(img, sr_image):
                    sr_image[out] = img
            else:  # the network on the heart region; outside it the placed LR stack and background
                y0, y1, x0, x1 = net
                img, lab = self._run_safe(placed[:, :, y0:y1, x0:x1], scale, flips=flips,
                                          context=None if context is None else context[:, :, y0:y1, x0:x1])
                placed[:, :, y0:y1, x0:x1] = img
                if not np.may_share_memory(placed, sr_image):
                    sr_image[out] = placed
                sr_labels[out] = 0
            timings["model"] += time.perf_counter() - tm
            if self.config.get("inference"):  # on the box alone when there is one: all labels are inside it
                from gemini_cmr.core.postprocess import postprocess_labels

                lab = postprocess_labels(lab, self.config)
            if not np.may_share_memory(lab, sr_labels):
                if net is None:
                    sr_labels[out] = lab
                else:
                    sr_labels[out, :, net[0]:net[1], net[2]:net[3]] = lab
            finished += chunk
            if on_chunk is not None:
                on_chunk(Prediction(sr, phase_list, sr_image, sr_labels, self.model_id, scale, dict(timings), roi, net,
                                    notes),
                         list(finished))
            if progress:
                progress((ci + 1) / n_chunks, f"super-resolved {len(finished)}/{len(phase_list)} phases")
        timings["total"] = time.perf_counter() - t0
        return Prediction(sr, phase_list, sr_image, sr_labels, self.model_id, scale, timings, roi, net, notes)

    def _heart_roi(self, study: Study, sr: Grid, phase: int, scale: float, roi_mm: float, norm: dict,
                   context: np.ndarray | None = None, notes: list[str] | None = None,
                   shifts: np.ndarray | None = None
                   ) -> tuple[tuple[int, int, int, int] | None, tuple[int, int, int, int] | None, float]:
        """Region-of-interest inference for models trained on heart-centred crops (the ACDC model):
        one phase through the network on the whole field of view finds the heart (the component most like
        the two ventricles, `keep_largest_heart_component(by="ventricle")`: a model that sees the whole
        field only here may paint solid false myocardium, or a liver-sized false LV cavity, elsewhere);
        the box is `roi_mm` wide in-plane, centred on it and
        moved inside the grid; the intensity scale is the percentile of the LR pixels inside the box, as
        for the training crops. With `inference.roi_margin_mm` the network box is the part of it within
        that margin of the heart found (`fit_heart_box`), else the box itself. Nothing found: the whole
        field of view, with a warning. `context`: `run_stacks`'s, on the whole field. `shifts`: `predict`'s
        `shifts_mm`.

        With `inference.heart_pass_mm` (an in-plane spacing coarser than the SR grid's) the whole field goes
        through the network on that coarser grid only to place a first box on the heart; the heart's extent
        then comes from a pass on the SR grid within that box (its own intensity scale, as in training).
        When that pass finds no heart or its heart touches the box's edge (the first box was off the heart,
        or cut it), the SR grid pass runs on the whole field instead. Returns (box, network box, scale)."""
        from gemini_cmr.core.postprocess import fit_heart_box, heart_roi

        inference = self.config.get("inference") or {}
        spacing_yx = (float(sr.spacing[1]), float(sr.spacing[0]))
        pass_mm = float(inference.get("heart_pass_mm") or 0)
        lab = None
        if pass_mm > float(sr.spacing[0]) + 1e-6:
            coarse = sr_grid(study.grid, inplane_mm=pass_mm)
            ctx = None if context is None else place_on_sr_grid(study.image[[0]], study.grid, coarse, shifts_mm=shifts)
            first = inplane_nearest(self._heart_labels(study, coarse, phase, scale, ctx, shifts=shifts), coarse, sr)
            window = heart_roi(first[0], spacing_yx, roi_mm)
            if window is not None:
                lab = self._heart_labels(study, sr, phase, self._roi_scale(study, sr, window, scale, norm), context,
                                         window, shifts)
                if not lab.any() or _touches_edge(lab[0], window, sr):
                    log.info("no heart within the coarse pass's box, or the heart reaches its edge: the heart pass "
                             "on the whole field")
                    lab = None
        if lab is None:
            lab = self._heart_labels(study, sr, phase, scale, context, shifts=shifts)
            lab = self._where_it_beats(study, sr, phase, scale, norm, roi_mm, context, lab, notes, shifts)
        roi = heart_roi(lab[0], spacing_yx, roi_mm)
        if roi is None:
            msg = "no heart found on the whole field of view: the network runs on all of it"
            log.warning(msg)
            if notes is not None:
                notes.append(msg)
            return None, None, scale
        log.info("heart region of interest: SR rows %d-%d, columns %d-%d (%.0f mm)", *roi, roi_mm)
        net = roi
        margin = float(inference.get("roi_margin_mm") or 0)
        if margin > 0:
            net = fit_heart_box(lab[0], spacing_yx, margin, roi, self.model.config.multiple)
            log.info("network box: SR rows %d-%d, columns %d-%d (the heart and %.0f mm)", *net, margin)
        return roi, net, self._roi_scale(study, sr, roi, scale, norm)

    def _where_it_beats(self, study: Study, sr: Grid, phase: int, scale: float, norm: dict, roi_mm: float,
                        context: np.ndarray | None, lab: np.ndarray, notes: list[str] | None = None,
                        shifts: np.ndarray | None = None) -> np.ndarray:
        """The whole-field pass's heart `lab` (1, D, H, W) where the cine beats there (the mean `cine_motion_map`
        over its in-plane extent >= `HEART_MOTION_MIN`, or no map: a single phase); else the heart found again
        by the network in a `roi_mm` box centred on where the cine beats (`motion_map_centre`), with that box's
        intensity scale, as in training, then in a box centred on the heart found there (a heart painted into
        still tissue, as noise in the field of view can make the whole-field pass do, is not taken); that box's
        pass finding nothing leaves `lab` as it was. What it did goes to the log and to `notes`."""
        from gemini_cmr.core.postprocess import (
            HEART_MOTION_MIN,
            box_around,
            cine_motion_map,
            heart_roi,
            motion_map_centre,
        )

        motion = cine_motion_map(study.image, study.grid)
        if motion is None:
            return lab
        fg = lab[0].any(axis=0)
        level = 0.0
        if fg.any():
            yy, xx = np.nonzero(fg)
            ijk = study.grid.world_to_index(sr.index_to_world(
                np.stack([xx, yy, np.full(xx.shape, (sr.shape[0] - 1) / 2)], axis=1).astype(np.float64)))
            jj = np.clip(np.rint(ijk[:, 1]).astype(np.int64), 0, motion.shape[0] - 1)
            ii = np.clip(np.rint(ijk[:, 0]).astype(np.int64), 0, motion.shape[1] - 1)
            level = float(motion[jj, ii].mean())
            if level >= HEART_MOTION_MIN:
                return lab
        x, y = sr.world_to_index(motion_map_centre(motion, study.grid))[:2]
        spacing_yx = (float(sr.spacing[1]), float(sr.spacing[0]))
        window = box_around((float(y), float(x)), spacing_yx, roi_mm, sr.shape[1:])
        again = self._heart_labels(study, sr, phase, self._roi_scale(study, sr, window, scale, norm), context, window,
                                   shifts)
        centred = heart_roi(again[0], spacing_yx, roi_mm) if again.any() else None
        if centred is not None and centred != window:  # once more with the heart found there in the middle
            window = centred
            again = self._heart_labels(study, sr, phase, self._roi_scale(study, sr, window, scale, norm), context,
                                       window, shifts)
        y0, y1, x0, x1 = window
        msg = (f"the heart the whole-field pass found lies where the cine hardly moves ({level:.2f} of the beating "
               f"region's motion): the heart found again in a {roi_mm:.0f} mm box where it beats (SR rows {y0}-{y1}, "
               f"columns {x0}-{x1}){'' if again.any() else ', which found none: kept'}")
        log.warning(msg)
        if notes is not None:
            notes.append(msg)
        return again if again.any() else lab

    def _heart_labels(self, study: Study, grid: Grid, phase: int, scale: float, context: np.ndarray | None,
                      window: tuple[int, int, int, int] | None = None, shifts: np.ndarray | None = None
                      ) -> np.ndarray:
        """(1, D, H, W) labels of one phase on `grid` (the labels alone: they find the heart), the heart
        component alone; with `window` (y0, y1, x0, x1) the network runs on that part of the grid only and
        the rest is background. `context` lies on `grid`, whole. `shifts`: `predict`'s `shifts_mm`."""
        from gemini_cmr.core.postprocess import postprocess_labels

        placed = place_on_sr_grid(study.image[[phase]], study.grid, grid, shifts_mm=shifts)
        if window is None:
            _, lab = self._run_safe(placed, scale, labels_only=True, context=context)
        else:
            y0, y1, x0, x1 = window
            _, part = self._run_safe(placed[:, :, y0:y1, x0:x1], scale, labels_only=True,
                                     context=None if context is None else context[:, :, y0:y1, x0:x1])
            lab = np.zeros(placed.shape, dtype=np.uint8)
            lab[:, :, y0:y1, x0:x1] = part
        return postprocess_labels(lab, {"inference": {"keep_largest_heart_component": True,
                                                      "heart_component_by": "ventricle"}})

    @staticmethod
    def _roi_scale(study: Study, sr: Grid, roi: tuple[int, int, int, int], scale: float | None, norm: dict) -> float:
        """The intensity scale of the heart box: the percentile of the LR pixels inside it (a box without LR
        pixels: `scale`, or the whole cine's when None)."""
        y0, y1, x0, x1 = roi
        lr = study.grid
        corners = np.array([[x, y, 0.0, 1.0] for y in (y0 - 0.5, y1 - 0.5) for x in (x0 - 0.5, x1 - 0.5)])
        ij = (lr.inverse @ sr.affine @ corners.T)[:2]  # LR (i = x, j = y) of the box corners
        ny, nx = lr.shape[1:]
        i0, i1 = max(0, int(np.floor(ij[0].min() + 0.5))), min(nx, int(np.ceil(ij[0].max() + 0.5)))
        j0, j1 = max(0, int(np.floor(ij[1].min() + 0.5))), min(ny, int(np.ceil(ij[1].max() + 0.5)))
        crop = study.image[:, :, j0:j1, i0:i1]
        pct = float(norm.get("percentile", DEFAULT_PERCENTILE))
        if crop.size:
            return intensity_scale(crop, pct)
        return scale if scale is not None else intensity_scale(study.image, pct)


def chunk_rows(phases: Sequence[int], batch: int, first: Sequence[int] = ()) -> list[slice | list[int]]:
    """The batches of rows of `phases` the network runs, in order: the rows of the `first` phases (those in
    `phases`) in batches of `batch`, the last of them filled up with the next other rows, then the other rows
    in order in batches of `batch`; a batch of consecutive rows is a slice (its outputs are written in place),
    any other a list of rows."""
    want = {int(p) for p in first}
    head = [i for i, p in enumerate(phases) if int(p) in want]
    rest = [i for i, p in enumerate(phases) if int(p) not in want]
    if head and len(head) % batch:
        fill = batch - len(head) % batch
        head, rest = sorted(head + rest[:fill]), rest[fill:]
    out: list[slice | list[int]] = []
    for rows in (head, rest):
        for b in (rows[i:i + batch] for i in range(0, len(rows), batch)):
            out.append(slice(b[0], b[-1] + 1) if b[-1] - b[0] == len(b) - 1 else b)
    return out


def _touches_edge(labels: np.ndarray, box: Sequence[int], grid: Grid) -> bool:
    """Labels (D, H, W) > 0 on the border rows or columns of the in-plane box (y0, y1, x0, x1), where that
    border is not the grid's own."""
    y0, y1, x0, x1 = (int(v) for v in box)
    fg = (labels[:, y0:y1, x0:x1] > 0).any(axis=0)
    if not fg.any():
        return False
    edges = ((y0 > 0, fg[0]), (y1 < grid.shape[1], fg[-1]), (x0 > 0, fg[:, 0]), (x1 < grid.shape[2], fg[:, -1]))
    return any(inner and bool(line.any()) for inner, line in edges)


def _box_within(box: Sequence[int], outer: Sequence[int]) -> bool:
    """Box (y0, y1, x0, x1) inside box `outer`."""
    return outer[0] <= box[0] < box[1] <= outer[1] and outer[2] <= box[2] < box[3] <= outer[3]


def _box_fits(roi: Sequence[int], sr: Grid) -> bool:
    """A box (y0, y1, x0, x1) that is non-empty and inside the SR grid's rows and columns."""
    if len(roi) != 4:
        return False
    y0, y1, x0, x1 = (int(v) for v in roi)
    return 0 <= y0 < y1 <= sr.shape[1] and 0 <= x0 < x1 <= sr.shape[2]


__all__ = ["Prediction", "Predictor", "class_argmax", "inference_copy", "run_stacks"]
