"""`gemini-cmr benchmark table3`: domain adaptation before a frozen Gemini-GAN (the paper's Table 3).

```python
from gemini_cmr.core.baselines.table3 import run_table3
report = run_table3("SOURCE", "TARGET", "OUT", methods=None, settings=Settings(quick=True))
```
Naming follows V-AMA (spec section 4): TARGET is the domain Gemini-GAN is trained on, SOURCE the new
(shifted) domain whose studies are adapted toward TARGET before super-resolution; both are paired datasets.
1. the frozen Gemini-GAN: `model`, else trained on TARGET into OUT/runs/gemini-gan (reused when finished);
2. each adaptation is trained on the `train` splits (OUT/runs/<method>, reused when there):
   `none` (identity), `cyclegan`, `bicyclegan`, `munit` (`core.baselines.translation`), `vama`
   (`core.train.vama.train_vama`);
3. every SOURCE test study is adapted (whole cine, slice by slice), super-resolved by the same Gemini-GAN
   and scored at ED and ES against SOURCE's HR truth exactly as in Table 2 (`core.baselines.table2`);
   the time per volume is the adaptation (cine time / phases) plus the network;
4. OUT/table3.md, OUT/table3.csv, OUT/table3.json.
The adapters return intensities in the study's own units (V-AMA's default `output_units` "source").
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gemini_cmr.core.baselines.table2 import (
    Log,
    Runner,
    ensure_trained,
    format_csv,
    format_markdown,
    score,
)
from gemini_cmr.core.errors import DataError
from gemini_cmr.core.evaluation.paired import PairedSubject
from gemini_cmr.core.io.atomic import atomic_write_text
from gemini_cmr.core.io.jsonio import jsonable

LABELS = {"none": "No adaptation", "cyclegan": "CycleGAN", "bicyclegan": "BicycleGAN", "munit": "MUNIT",
          "vama": "V-AMA"}


def _record(run: Path) -> dict | None:
    try:
        return json.loads((run / "benchmark_train.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _train_adapter(name: str, source: Path, target: Path, run: Path, model: Path, settings, say: Log) -> dict:
    from gemini_cmr.core.baselines.translation import train_translator
    from gemini_cmr.core.train.vama import TrainSettings, train_vama
    from gemini_cmr.core.vama.domains import read_domain

    wanted = {"epochs": settings.epochs, "max_steps": settings.max_steps, "seed": settings.seed,
              "quick": settings.quick}
    rec = _record(run)
    if rec and rec.get("config") == wanted:
        say(f"{name}: reusing the trained adapter in {run}")
        return rec
    if run.exists() and any(run.iterdir()):
        raise DataError(f"{run} holds a {name} run with other settings or unfinished; remove it "
                        "or choose another --out", run)
    say(f"{name}: training")
    device = "cuda" if settings.device == "cuda" else "cpu"
    if settings.device == "auto":
        from gemini_cmr.core.device import resolve_device

        device = str(resolve_device("auto"))
    t0 = time.perf_counter()
    if name == "vama":
        train_vama(source, target, run, gemini=str(model), settings=TrainSettings(
            epochs=settings.epochs, max_steps=settings.max_steps, seed=settings.seed, device=device,
            measure=False))  # the table evaluates every method itself
        steps = None
    else:
        batch = 4
        n_slices = sum(s.image.shape[0] * s.image.shape[1] for s in read_domain(source, "source", "train"))
        steps = settings.epochs * max(1, math.ceil(n_slices / batch))
        if settings.max_steps:
            steps = min(steps, settings.max_steps)
        train_translator(name, source, target, run, steps=steps, batch_size=batch, crop=64,
                         ch=8 if settings.quick else 16, blocks=2 if settings.quick else 3, seed=settings.seed,
                         device=device, gemini=str(model), say=say)
    rec = {"status": "done", "steps": steps, "seconds": time.perf_counter() - t0, "config": wanted}
    atomic_write_text(run / "benchmark_train.json", json.dumps(rec, indent=2) + "\n")
    return rec


class _Adapt:
    def __init__(self, name: str, run: Path, device: str):
        self.name, self.params, self.model_id = name, 0, ""
        self.fn = None
        if name == "vama":
            from gemini_cmr.core.models.vama import Adapter

            a = Adapter.load(run, device=device)
            self.fn, self.model_id = a.adapt_array, a.adapter_id
            self.params = sum(p.numel() for net in (a.model.g_t, a.model.g_s) for p in net.parameters())
        elif name != "none":
            from gemini_cmr.core.baselines.translation import TranslatorAdapter

            a = TranslatorAdapter(run, device)
            self.fn, self.model_id = a.adapt_array, a.model_id
            self.params = sum(p.numel() for p in a.net.parameters())

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        if self.fn is None:
            return image, 0.0
        t0 = time.perf_counter()
        out = self.fn(image)
        return out.astype(np.float32), (time.perf_counter() - t0) / image.shape[0]


def run_table3(source: str | Path, target: str | Path, out: str | Path, methods: Sequence[str] | None = None,
               settings=None, model: str | Path | None = None, limit: int | None = None, say: Log | None = None,
               command: str = "") -> dict[str, Any]:
    from gemini_cmr.core.baselines.registry import Settings
    from gemini_cmr.core.io.manifest import read_manifest

    say = say or (lambda m: None)
    settings = settings or Settings()
    source, target, out = Path(source), Path(target), Path(out)
    names = list(methods) if methods else list(LABELS)
    bad = [m for m in names if m not in LABELS]
    if bad:
        raise DataError(f"unknown method(s) {', '.join(bad)} (use {', '.join(LABELS)})")
    read_manifest(target)
    entries = [e for e in read_manifest(source)["subjects"] if e["split"] == "test"][:limit]
    if not entries:
        raise DataError("no subjects with split 'test' in the manifest", source / "manifest.json")
    if settings.num_threads > 0:
        import torch

        torch.set_num_threads(settings.num_threads)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    gemini_rec = None
    if model is None:
        gemini_rec = ensure_trained("gemini-gan", target, out / "runs" / "gemini-gan", settings, say)
        model = out / "runs" / "gemini-gan" / "best"
    model = Path(model)
    trained = {n: _train_adapter(n, source, target, out / "runs" / n, model, settings, say)
               for n in names if n != "none"}
    say(f"evaluating {len(names)} adaptations on {len(entries)} source test subjects")
    subjects = [PairedSubject(source, e) for e in entries]
    runner = Runner("gemini-gan", model, settings.device)
    dev = str(runner.device)
    results = []
    for name in names:
        adapt = _Adapt(name, out / "runs" / name, dev)
        rows, times = [], []
        for s in subjects:
            original = s.lr_image
            adapted, t_adapt = adapt(original)
            s.lr_image = adapted
            try:
                for ph, t in s.phases.items():
                    img, lab, dt = runner(s, t)
                    times.append(dt + t_adapt)
                    rows.append({"subject": s.id, "phase": ph, "t": t, **score(img, lab, s, t)})
            finally:
                s.lr_image = original
        results.append({"method": name, "label": LABELS[name], "rows": rows, "time_s": times,
                        "params": adapt.params, "model_id": adapt.model_id, "train": trained.get(name)})
        say(f"{name}: evaluated")
    md = [f"# Table 3: {source.name} adapted to {target.name}, frozen Gemini-GAN "
          f"({len(entries)} source test subjects, ED and ES)", ""]
    if command:
        md += [f"Command: `{command}`", ""]
    gem = (f"trained here on {target.name} ({gemini_rec['steps']} steps, {gemini_rec['seconds'] / 60:.1f} min)"
           if gemini_rec else f"{model}")
    md += [f"Gemini-GAN {runner.model_id[:12]}: {gem}. Adapters: seed {settings.seed}, epochs {settings.epochs}, "
           f"max steps {settings.max_steps}{' (quick sizes)' if settings.quick else ''}. Parameters and s / volume "
           f"are the adapter's (s / volume includes the network). Benchmark wall time "
           f"{(time.perf_counter() - t_start) / 60:.1f} min.", "", format_markdown(results, "Table 3")]
    text = "\n".join(md)
    atomic_write_text(out / "table3.md", text)
    atomic_write_text(out / "table3.csv", format_csv(results))
    atomic_write_text(out / "table3.json", json.dumps(jsonable({"command": command, "source": str(source),
                                                              "target": str(target), "results": results}), indent=1))
    return {"markdown": text, "results": results}
