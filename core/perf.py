"""Performance measurement shared by `gemini-cmr bench` and `benchmarks/bench_pipeline.py`.

Everything is measured in one process, side by side, so the ratios do not depend on another run's load:

- the pipeline on a 20-phase cine (the demo study by default): study load, model load, preprocessing
  (placement on the SR grid), the network (per phase and per cine), back-projection of the labels,
  phenotypes, ED/ES meshes, end to end (file -> results in memory) and writing all outputs;
- peak RSS of the process (and peak GPU memory on CUDA), taken before the reference run;
- the model's convolution FLOPs (`torch.utils.flop_counter.FlopCounterMode` on a meta-device copy:
  convolutions and matmuls, not pooling/upsampling/activations) -> achieved GFLOP/s, against the
  machine's matmul GFLOP/s measured in the same run;
- the paper's reference configuration (widths 64-128-256-512-512, input 100 x 400 x 400, batch 1, float32,
  one phase per call, random weights) on N phases, extrapolated to the cine's phase count.
"""

from __future__ import annotations

import copy
import math
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from gemini_cmr.core.io.nifti import save_nifti
from gemini_cmr.core.resources import demo_study_path

DEMO_STUDY = demo_study_path()
REFERENCE_INPUT = (100, 400, 400)  # (D, H, W) of the paper's reference configuration
QUICK_REFERENCE_INPUT = (8, 32, 32)

Log = Callable[[str], None]


# --- inputs -------------------------------------------------------------------------------------------
def quick_study(folder: Path, n_phases: int = 3, n_slices: int = 4) -> Path:
    """A small cut of the demo study (its first phases, middle slices) for a smoke run of the bench."""
    from gemini_cmr.core.io import load_study

    demo = load_study(DEMO_STUDY)
    z0 = max(0, (demo.image.shape[1] - n_slices) // 2)
    affine = demo.affine.copy()
    affine[:3, 3] = (demo.affine @ np.array([0.0, 0.0, z0, 1.0]))[:3]
    path = Path(folder) / "quick.nii.gz"
    save_nifti(path, demo.image[:n_phases, z0:z0 + n_slices], affine, phase_interval_ms=40.0)
    return path


class OraclePredictor:
    """Predictor interface returning a phantom's HR ground truth (no network)."""

    model_id = "oracle"
    device = "cpu"

    def __init__(self, pair):
        self.pair = pair

    def predict(self, study, phases=None, progress=None, cancel=None):
        from gemini_cmr.core.predict import Prediction

        phases = list(range(study.n_phases)) if phases is None else list(phases)
        hr = self.pair.hr
        return Prediction(hr.grid, phases, hr.image[phases], hr.labels[phases], self.model_id)


# --- the pipeline ---------------------------------------------------------------------------------------
def run_once(
    study_path: Path,
    model: Any,
    device: str,
    out: Path | None,
    phase_mode: str = "all",
    meshes: str = "ed_es",
) -> dict[str, Any]:
    """study file -> SuperResolver.run -> (write_outputs when `out`); seconds per stage, `_`-keys = info."""
    from gemini_cmr.core.engine import SuperResolver
    from gemini_cmr.core.io import load_study
    from gemini_cmr.core.outputs import resolve_sr_dtype, write_outputs

    t0 = time.perf_counter()
    c0 = time.process_time()
    study = load_study(study_path)
    t_load = time.perf_counter() - t0
    engine = SuperResolver(model=model, device=device)
    result = engine.run(study, phases=phase_mode, meshes=meshes)
    tm: dict[str, Any] = dict(result.timings)
    tm["load_study"] = t_load
    tm["end_to_end"] = time.perf_counter() - t0
    if out is not None:  # as `super-resolve` writes them (SR image type and DICOM outputs by default)
        write_outputs(result, out, ["stl"])
        tm["files_to_outputs"] = time.perf_counter() - t0
        tm["write"] = tm["files_to_outputs"] - tm["end_to_end"]
        if "write_dicom" in result.timings:
            tm["write_dicom"] = result.timings["write_dicom"]
        tm["_sr_dtype"] = resolve_sr_dtype(study)
    tm["cpu_seconds"] = time.process_time() - c0  # all threads of this process
    tm["_device"] = engine.device
    tm["_sr_shape"] = list(result.sr_grid.shape)
    tm["_n_phases"] = len(result.phases)
    tm["_result"] = result
    return tm


# --- machine ----------------------------------------------------------------------------------------------
def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def matmul_gflops(device: str = "cpu", dtype: str = "float32", n: int = 2048, min_time: float = 1.0) -> float:
    """Best-of achieved GFLOP/s of an n x n matmul (2 n^3 FLOPs) in `dtype`, repeated for >= min_time s."""
    import torch

    dt = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device=device, dtype=dt)
    b = torch.randn(n, n, generator=g).to(device=device, dtype=dt)
    with torch.inference_mode():
        torch.mm(a, b)
        _sync(device)
        best, spent = math.inf, 0.0
        while spent < min_time:
            t = time.perf_counter()
            torch.mm(a, b)
            _sync(device)
            d = time.perf_counter() - t
            best, spent = min(best, d), spent + d
    return 2.0 * n**3 / best / 1e9


def model_flops(model, input_shape: tuple[int, ...], example=None) -> float:
    """FLOPs of one forward pass at `input_shape` (B, D, H, W), counted on a meta-device copy (no compute).
    `example`: a real input (array of that shape) for models whose work depends on the data (the
    "acquired-2d" generator runs once per acquired slice): counted by a float32 forward on the CPU.

    FlopCounterMode counts convolutions and matmuls (2 FLOPs per multiply-add); pooling, upsampling,
    BatchNorm and activations are not counted (they are < 1% of the total here)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    if example is not None:
        net = copy.deepcopy(model).to("cpu").float().eval()
        x = torch.as_tensor(np.asarray(example, np.float32)).reshape(input_shape)
    else:
        net = copy.deepcopy(model).to("meta")
        x = torch.zeros(input_shape, device="meta")
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        if getattr(getattr(net, "config", None), "first_phase_context", False):  # context: the same shape as x
            net(x, x)
        else:
            net(x)
    return float(fc.get_total_flops())


def network_input(study, depth: int, multiple: int) -> np.ndarray:
    """The generator's input for the study's first phase, as `core.predict.run_stacks` builds it (placed on
    the SR grid, zero-padded in-plane, the first depth window): (1, depth, H', W')."""
    from gemini_cmr.core.geometry import place_on_sr_grid, sr_grid
    from gemini_cmr.core.models.preprocess import depth_windows, pad_amounts

    placed = place_on_sr_grid(study.image[[0]], study.grid, sr_grid(study.grid))
    _, dz, h, w = placed.shape
    (py0, py1), (px0, px1) = pad_amounts(h, multiple), pad_amounts(w, multiple)
    start, off = depth_windows(dz, depth)[0]
    n = min(depth, dz)
    x = np.zeros((1, depth, h + py0 + py1, w + px0 + px1), np.float32)
    x[:, off:off + n, py0:py0 + h, px0:px0 + w] = placed[:, start:start + n]
    return x


# --- the reference configuration ------------------------------------------------------------------------
def reference_model(depth: int):
    """The paper's network: widths 64-128-256-512-512, plain 1x1 heads, random weights, eval mode."""
    from gemini_cmr.core.models.gemini import REFERENCE_WIDTHS, GeminiConfig, GeminiGenerator

    cfg = GeminiConfig(depth=depth, widths=REFERENCE_WIDTHS, residual_image=False, input_to_heads=False)
    return GeminiGenerator(cfg).eval()


def time_reference(
    device: str, n_phases: int, shape: tuple[int, int, int] = REFERENCE_INPUT, log: Log | None = None
) -> dict[str, Any]:
    """Run the reference configuration on `n_phases` random phases, one per call (batch 1, float32)."""
    import torch

    d, h, w = shape
    model = reference_model(d).to(device)
    flops = model_flops(model, (1, d, h, w))
    g = torch.Generator().manual_seed(0)
    per_phase = []
    with torch.inference_mode():
        for i in range(n_phases):
            x = torch.rand((1, d, h, w), generator=g).to(device)
            _sync(device)
            t = time.perf_counter()
            img, seg = model(x)
            _ = img.cpu(), seg.argmax(1).cpu()
            _sync(device)
            per_phase.append(time.perf_counter() - t)
            if log:
                log(f"reference phase {i + 1}/{n_phases}: {per_phase[-1]:.2f} s")
    del model
    # The first call also pays one-off allocations and kernel selection: with >= 2 phases it is left out.
    timed = per_phase[1:] if len(per_phase) > 1 else per_phase
    mean = statistics.fmean(timed)
    return {"input": [d, h, w], "widths": [64, 128, 256, 512, 512], "batch": 1, "precision": "float32",
            "phases_measured": n_phases, "first_call_excluded": len(per_phase) > 1, "seconds_per_phase": [round(v, 3) for v in per_phase],
            "mean_s_per_phase": mean, "gflop_per_phase": flops / 1e9,
            "gflops_achieved": flops / mean / 1e9}  # fmt: skip


# --- precision check ----------------------------------------------------------------------------------
def precision_agreement(ref, test, hr_image: np.ndarray | None = None) -> dict[str, float]:
    """Compare two `Prediction`s of the same phases (e.g. float32 vs bfloat16).

    label_agreement: fraction of SR voxels with the same label; psnr_vs_reference_db: PSNR of the test SR
    image against the reference SR image (data range = the reference's range per phase, mean over phases);
    with `hr_image` (T', D, H, W ground truth on the SR grid): psnr_change_db = mean PSNR(test, HR) -
    mean PSNR(ref, HR). `passes`: the acceptance, agreement >= 0.995 and |psnr_change_db| < 0.1."""
    from gemini_cmr.core.evaluation.metrics import psnr

    out = {"label_agreement": float(np.mean(ref.sr_labels == test.sr_labels))}
    vals = []
    for a, b in zip(ref.sr_image, test.sr_image):
        rng = float(a.max() - a.min()) or 1.0
        vals.append(min(psnr(b, a, data_range=rng), 200.0))
    out["psnr_vs_reference_db"] = float(np.mean(vals))
    if hr_image is not None:
        p_ref, p_test = [], []
        for a, b, h in zip(ref.sr_image, test.sr_image, hr_image):
            rng = float(h.max() - h.min()) or 1.0
            p_ref.append(psnr(a, h, data_range=rng))
            p_test.append(psnr(b, h, data_range=rng))
        out["psnr_reference_db"] = float(np.mean(p_ref))
        out["psnr_test_db"] = float(np.mean(p_test))
        out["psnr_change_db"] = out["psnr_test_db"] - out["psnr_reference_db"]
    out["passes"] = bool(out["label_agreement"] >= 0.995 and abs(out.get("psnr_change_db", 0.0)) < 0.1)
    return out


# --- the whole benchmark ----------------------------------------------------------------------------------
def default_real_study() -> Path | None:
    """The real 20-phase cine timed beside the demo when the user names none: the first Sunnybrook GE cine
    of the shared data folder beside the repository (`../shared/data`), or `GEMINI_CMR_BENCH_REAL`."""
    env = os.environ.get("GEMINI_CMR_BENCH_REAL")
    if env:
        return Path(env)
    root = Path(__file__).resolve().parents[1]
    for base in (root.parent / "shared" / "data", root / ".." / "shared" / "data"):
        p = base / "sunnybrook" / "SCD0000101"
        if p.is_dir():
            return p.resolve()
    return None


#: The summary every study's report carries (stable keys: `gemini-cmr bench --json`, README's table).
SUMMARY_KEYS = ("model_per_cine_s", "end_to_end_s", "write_s", "file_to_outputs_s", "reference_per_cine_s",
                "speedup")


def _time_study(study_path: Path, what: str, model: str | Path | None, dev, precision: str | None,
                batch_size: int | None, repeat: int, meshes: bool, tmp: Path, say: Log) -> dict[str, Any]:
    """The pipeline on one study, as `super-resolve` runs it: the model chosen for the study
    (`core.resources.default_model_for`) unless one is given, the heart box when the model asks for it,
    every output written (DICOM too for DICOM input). Returns the report without the reference."""
    import torch

    from gemini_cmr.core.io import load_study
    from gemini_cmr.core.models.preprocess import depth_windows, pad_amounts
    from gemini_cmr.core.predict import Predictor
    from gemini_cmr.core.resources import default_model_for

    s = load_study(study_path)
    n_t = s.n_phases
    choice = "explicit model"
    if model is None:
        model, choice = default_model_for(s)
    t = time.perf_counter()
    kw = {} if precision is None else {"precision": precision}
    predictor = Predictor.load(model, device=dev, batch_size=batch_size, **kw)
    t_model = time.perf_counter() - t
    # Warm-up: one batch through the network (first-call allocations and kernel selection).
    predictor.predict(s, phases=list(range(min(predictor.batch_size, n_t))))
    gcfg = predictor.model.config  # "acquired-2d": its work depends on the number of acquired slices
    example = network_input(s, gcfg.depth, gcfg.multiple) if gcfg.encoder == "acquired-2d" else None
    del s
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    say(f"pipeline on {what} ({predictor.precision}, {dev}, model {Path(str(model)).name}: {choice})")
    runs = []
    for i in range(max(1, repeat)):
        runs.append(run_once(study_path, predictor, str(dev), tmp / f"out{i}" if meshes else None,
                             meshes="ed_es" if meshes else "none"))
        if len(runs) > 1:  # only the last result stays alive, as in a batch or the app (on CUDA its
            runs[-2].pop("_result", None)  # pinned output blocks are then reused from torch's cache)
        r = runs[-1]
        say(f"pipeline run {i + 1}/{max(1, repeat)}: network {_network_s(r):.2f} s, "
            f"end to end {r['end_to_end']:.2f} s" + (f", file to outputs {r['files_to_outputs']:.2f} s"
                                                      if "files_to_outputs" in r else ""))
    result = runs[-1].pop("_result")
    tm = dict(runs[-1])
    for k in tm:  # median per stage over the repeats
        if not k.startswith("_"):
            vals = [r[k] for r in runs if k in r]
            tm[k] = statistics.median(vals)
    tm["load_model"] = t_model
    rss = peak_rss_mb()
    gpu_mem = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else None
    if n_t != 20:
        say(f"note: {what} has {n_t} phases, not 20")
    n_ph = tm["_n_phases"]
    # Model FLOPs: one forward per depth window per phase at the padded in-plane size (of the heart box when
    # the network ran on one, plus the whole-field pass that found it).
    cfg = predictor.model.config
    dz, h, w = tm["_sr_shape"]
    roi = getattr(result, "net_roi", None) or result.roi
    bh, bw = (roi[1] - roi[0], roi[3] - roi[2]) if roi else (h, w)
    hp, wp = bh + sum(pad_amounts(bh, cfg.multiple)), bw + sum(pad_amounts(bw, cfg.multiple))
    n_win = len(depth_windows(dz, cfg.depth))
    box_example = None
    if example is not None:
        if roi:
            full = example[:, :, sum(pad_amounts(h, cfg.multiple)[:1]):, sum(pad_amounts(w, cfg.multiple)[:1]):]
            crop = full[:, :, roi[0]:roi[1], roi[2]:roi[3]]
            (py0, py1), (px0, px1) = pad_amounts(bh, cfg.multiple), pad_amounts(bw, cfg.multiple)
            box_example = np.pad(crop, ((0, 0), (0, 0), (py0, py1), (px0, px1)))
        else:
            box_example = example
    f_fwd = model_flops(predictor.model, (1, cfg.depth, hp, wp), box_example)
    f_cine = f_fwd * n_win * n_ph
    if roi:
        hf, wf = h + sum(pad_amounts(h, cfg.multiple)), w + sum(pad_amounts(w, cfg.multiple))
        f_cine += model_flops(predictor.model, (1, cfg.depth, hf, wf), example) * n_win
    model_s = _network_s(tm)
    stages = {k: round(float(v), 4) for k, v in tm.items() if not k.startswith("_")}
    return {
        "study": what, "study_path": str(study_path),
        "model_id": predictor.model_id, "model_name": _model_name(model), "model_choice": choice,
        "model_widths": list(cfg.widths), "precision": predictor.precision,
        "batch_size": predictor.batch_size, "phases": n_ph, "repeats": max(1, repeat),
        "model_s_per_cine_all_repeats": [round(_network_s(r), 3) for r in runs], "sr_grid": tm["_sr_shape"],
        "roi_sr_yx": list(result.roi) if result.roi else None, "network_roi_sr_yx": list(roi) if roi else None,
        "network_input": [cfg.depth, hp, wp], "depth_windows": n_win,
        "sr_image_dtype": tm.get("_sr_dtype"), "dicom_outputs": "write_dicom" in tm,
        "stages_s": stages,
        "model_s_per_cine": model_s, "model_s_per_phase": model_s / n_ph,
        "model_gflop_per_cine": f_cine / 1e9, "model_gflops_achieved": f_cine / model_s / 1e9,
        "peak_rss_mb": rss, "peak_gpu_mb": gpu_mem,
        "ed_phase": result.ed_phase, "es_phase": result.es_phase, "meshes": meshes,
    }  # fmt: skip


def _network_s(tm: dict[str, Any]) -> float:
    """The network's seconds for the cine: the predictor's network stage, plus the whole-field pass that
    found the heart box (`predict_roi`) for models that run on one."""
    return float(tm.get("predict_model", tm.get("predict", 0.0))) + float(tm.get("predict_roi", 0.0))


def _model_name(model: str | Path | None) -> str:
    if model is None:
        return "gemini-phantom"
    p = Path(str(model))
    return p.parent.name if p.name == "model.safetensors" else (p.stem if p.suffix else p.name)


def _summarise(rep: dict[str, Any], ref: dict[str, Any]) -> None:
    """Add the reference, the speed-ups and `SUMMARY_KEYS` to a study's report (in place)."""
    n_ph = rep["phases"]
    ref_cine = ref["mean_s_per_phase"] * n_ph
    s = rep["stages_s"]
    rep["reference"] = {**ref, "extrapolated_s_per_cine": ref_cine, "extrapolated_to_phases": n_ph}
    rep["speedup_model_vs_reference"] = ref_cine / rep["model_s_per_cine"]
    rep["speedup_end_to_end_vs_reference"] = ref_cine / s["end_to_end"]
    rep.update({"model_per_cine_s": round(rep["model_s_per_cine"], 3), "end_to_end_s": s["end_to_end"],
                "write_s": s.get("write"), "file_to_outputs_s": s.get("files_to_outputs"),
                "reference_per_cine_s": round(ref_cine, 3),
                "speedup": round(rep["speedup_model_vs_reference"], 2)})


def run_bench(
    study: str | Path | None = None,
    device: str = "auto",
    phases: int = 20,
    reference_phases: int = 2,
    model: str | Path | None = None,
    precision: str | None = None,
    quick: bool = False,
    threads: int | None = None,
    repeat: int = 3,
    log: Log | None = None,
    meshes: bool = True,
    batch_size: int | None = None,
    real: str | Path | None = None,
) -> dict[str, Any]:
    """Measure everything (see the module docstring) and return a JSON-able report.

    `study`: time that study the way `super-resolve` would (the model chosen for it unless `model` is
    given; the heart box; every output, DICOM too for DICOM input); the report is flat. No `study` (and
    not `quick`): the demo study and a real study (`real`, else `default_real_study()`), each in its own
    report under "demo" and "real" (with `SUMMARY_KEYS`; "real" is None when there is none), the reference
    network measured once for both. `model` applies to `study` (or to the demo without one).
    meshes=False: no ED/ES meshes and no output writing (for machines without VTK, e.g. a GPU node that
    only runs the network); the report says so and leaves those stages out."""
    import torch

    from gemini_cmr.core.device import resolve_device

    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    load_before = os.getloadavg()[0]
    say = log or (lambda msg: None)
    studies: list[tuple[str, Path, str, str | Path | None]] = []
    with tempfile.TemporaryDirectory(prefix="gemini-bench-") as tmp:
        tmp = Path(tmp)
        if quick:
            studies.append(("quick", quick_study(tmp, min(phases, 3), 4),
                            f"quick: demo study, {min(phases, 3)} phases x 4 slices", model or _bundled()))
        elif study is not None:
            studies.append(("study", Path(study), str(study), model))
        else:
            studies.append(("demo", DEMO_STUDY, "demo study", model))
            real_path = Path(real) if real is not None else default_real_study()
            if real_path is not None:
                studies.append(("real", real_path, f"real study {real_path.name}", None))
            else:
                say("no real study: name one with --real (or GEMINI_CMR_BENCH_REAL); timing the demo only")
        reports: dict[str, dict[str, Any]] = {}
        for key, path, what, m in studies:
            sub = tmp / key
            sub.mkdir()
            reports[key] = _time_study(path, what, m, dev, precision, batch_size, repeat, meshes, sub, say)
    say("matmul peak")
    mm_n = 256 if quick else 2048
    mm_time = 0.2 if quick else 1.0
    mm32 = matmul_gflops(str(dev), "float32", mm_n, mm_time)
    precisions = {r["precision"] for r in reports.values()} - {"float32"}
    mm_low = {p: matmul_gflops(str(dev), p, mm_n, mm_time) for p in sorted(precisions)}
    say(f"reference configuration, {reference_phases} phase(s)")
    ref = time_reference(str(dev), reference_phases, QUICK_REFERENCE_INPUT if quick else REFERENCE_INPUT, say)
    ref["matmul_ratio"] = ref["gflops_achieved"] / mm32
    machine = {
        "quick": quick, "device": str(dev),
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        "cpu": _cpu_name(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),  # idle threads spin or sleep: x1.05 idle, 2-5x loaded
        "torch": torch.__version__, "platform": platform.platform(),
        "matmul_gflops_float32": mm32,
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }  # fmt: skip
    for rep in reports.values():
        _summarise(rep, ref)
        low = mm_low.get(rep["precision"])
        rep.update(machine)
        rep["matmul_gflops_bfloat16"] = low
        rep["model_matmul_ratio"] = rep["model_gflops_achieved"] / (low or mm32)
    if len(studies) == 1:
        return reports[studies[0][0]]
    return {"demo": reports["demo"], "real": reports.get("real"), **machine,
            "reference": ref}  # fmt: skip


def _bundled() -> Path:
    from gemini_cmr.core.resources import bundled_model_path

    return bundled_model_path()


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def format_report(r: dict[str, Any]) -> str:
    """The human-readable report printed by `gemini-cmr bench`: one study's table, or (no `--study`) the
    real study's and the demo's, with a summary table leading with the real path."""
    if "demo" not in r:
        return _format_study(r)
    parts = [
        "| study | model | network per cine s | end to end s | writing s | file -> all outputs s | "
        "reference per cine s | speed-up (network) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key in ("real", "demo"):
        rep = r.get(key)
        if rep is None:
            continue

        def f(v):
            return "n/a" if v is None else f"{v:.2f}"

        parts.append(f"| {key}: {rep['study']} | {rep['model_name']} | {f(rep['model_per_cine_s'])} | "
                     f"{f(rep['end_to_end_s'])} | {f(rep['write_s'])} | {f(rep['file_to_outputs_s'])} | "
                     f"{f(rep['reference_per_cine_s'])} | {rep['speedup']:.1f}x |")
    blocks = ["\n".join(parts)]
    blocks += [_format_study(r[key]) for key in ("real", "demo") if r.get(key) is not None]
    return "\n\n".join(blocks)


def _format_study(r: dict[str, Any]) -> str:
    s = r["stages_s"]
    ref = r["reference"]
    n = r["phases"]
    dev = r["device"] + (f" ({r['gpu']})" if r["gpu"] else f" ({r['cpu']}, {r['torch_threads']} threads)")
    rows = [
        ("study load", s.get("load_study")),
        ("model load", s.get("load_model")),
        ("preprocessing (placement on SR grid)", s.get("predict_preprocess")),
        ("network: whole-field pass finding the heart box", s.get("predict_roi")),
        (f"network, per cine ({n} phases{', with the heart-finding pass' if s.get('predict_roi') else ''})",
         r["model_s_per_cine"]),
        ("model, per phase", r["model_s_per_phase"]),
        ("labels back on input grid", s.get("lr_labels")),
        ("phenotypes", s.get("phenotypes")),
        ("mesh extraction (ED + ES)", s.get("meshes") if r.get("meshes", True) else None),
        ("end to end (file -> results in memory, model loaded)" if r.get("meshes", True)
         else "end to end WITHOUT meshes (file -> results in memory, model loaded)", s.get("end_to_end")),
        ("writing all outputs", s.get("write")),
        ("  of which the DICOM outputs (SR series, SEGs)", s.get("write_dicom")),
        ("file -> all outputs written", s.get("files_to_outputs")),
    ]
    lines = [
        f"Gemini CMR bench: {r['study']}, {n} phases, SR grid {r['sr_grid']} (D, H, W), network input "
        f"{r['network_input']} x {r['depth_windows']} window(s)"
        + (f", heart box SR rows/columns {r['roi_sr_yx']}" if r.get("roi_sr_yx") else "")
        + (f"; SR image stored as {r['sr_image_dtype']}" if r.get("sr_image_dtype") else ""),
        f"model {r.get('model_name', '')} ({r.get('model_choice', '')}) "
        f"{r['model_id'][:12]} widths {'-'.join(map(str, r['model_widths']))}, {r['precision']}, "
        f"batch {r['batch_size']}; device {dev}; pipeline: median of {r['repeats']} run(s) after a warm-up "
        f"(model per cine: {', '.join(f'{v:.2f}' for v in r['model_s_per_cine_all_repeats'])} s); load average {r['load_average_1min'][0]:.2f} before, "
        f"{r['load_average_1min'][1]:.2f} after",
        "",
        "| stage | seconds |",
        "|---|---|",
    ]
    lines += [f"| {name} | {v:.3f} |" for name, v in rows if v is not None]
    mm = r["matmul_gflops_float32"]
    lines += [
        "",
        f"peak RSS {r['peak_rss_mb']:.0f} MiB"
        + (f", peak GPU memory {r['peak_gpu_mb']:.0f} MiB" if r["peak_gpu_mb"] is not None else ""),
        f"model: {r['model_gflop_per_cine']:.1f} GFLOP per cine (conv), {r['model_gflops_achieved']:.1f} GFLOP/s "
        f"achieved; matmul float32 {mm:.1f} GFLOP/s"
        + (
            f", {r['precision']} {r['matmul_gflops_bfloat16']:.1f} GFLOP/s"
            if r["matmul_gflops_bfloat16"]
            else ""
        )
        + f"; ratio {r['model_matmul_ratio']:.2f}",
        f"reference (paper) configuration: widths 64-128-256-512-512, input "
        f"{' x '.join(map(str, ref['input']))}, batch 1, float32, one phase per call, "
        f"{ref['gflop_per_phase']:.0f} GFLOP per phase: measured {ref['phases_measured']} phase(s) in this run "
        f"({', '.join(f'{v:.2f}' for v in ref['seconds_per_phase'])} s), "
        f"{ref['mean_s_per_phase']:.2f} s per phase{' without the first call' if ref['first_call_excluded'] else ''} ({ref['gflops_achieved']:.1f} GFLOP/s, "
        f"ratio {ref['matmul_ratio']:.2f} of matmul)",
        f"  EXTRAPOLATED to {ref['extrapolated_to_phases']} phases: {ref['extrapolated_s_per_cine']:.1f} s",
        f"speed-up vs the reference's extrapolated {n} phases: model {r['speedup_model_vs_reference']:.1f}x, "
        f"end to end {r['speedup_end_to_end_vs_reference']:.1f}x",
    ]
    return "\n".join(lines)


__all__ = [
    "DEMO_STUDY",
    "OraclePredictor",
    "SUMMARY_KEYS",
    "default_real_study",
    "format_report",
    "matmul_gflops",
    "model_flops",
    "peak_rss_mb",
    "precision_agreement",
    "reference_model",
    "run_bench",
    "run_once",
    "time_reference",
    "quick_study",
]
