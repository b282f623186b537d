"""Generic training utilities: torch.distributed set-up, deterministic
RNG capture, optimizer state <-> safetensors/JSON (no pickle), progress events with ETA, stop requests.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from gemini_cmr.core.errors import DataError
from gemini_cmr.core.io.atomic import atomic_write_text
from gemini_cmr.core.models.store import file_sha256, load_tensors, save_tensors

log = logging.getLogger(__name__)
EventCallback = Callable[[dict[str, Any]], None]


# --- distributed ------------------------------------------------------------------------------------
@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1): gloo on CPU, nccl on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world, local)


def all_reduce_mean_grads(params, info: DistInfo) -> None:
    if not info.enabled:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(info.world)


def any_rank(flag: bool, info: DistInfo) -> bool:
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


# --- optimizer / RNG state as tensors + JSON ------------------------------------------------------------
def optimizer_state(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {"param_groups": sd["param_groups"], "state": {}}
    for pid, st in sd["state"].items():
        entry = {}
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{prefix}.{pid}.{k}"] = v
                entry[k] = "tensor"
            else:
                entry[k] = v
        meta["state"][str(pid)] = entry
    return tensors, meta


def load_optimizer_state(opt: torch.optim.Optimizer, prefix: str, tensors: dict, meta: dict) -> None:
    state = {}
    for pid, entry in meta["state"].items():
        state[int(pid)] = {k: (tensors[f"{prefix}.{pid}.{k}"] if v == "tensor" else v) for k, v in entry.items()}
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def rng_state() -> dict[str, torch.Tensor]:
    out = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"rng.cuda.{i}"] = s
    return out


def set_rng_state(tensors: dict[str, torch.Tensor]) -> None:
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"].to(torch.uint8))
    cuda = sorted(k for k in tensors if k.startswith("rng.cuda."))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k].to(torch.uint8) for k in cuda])


def write_state(folder: Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """state.safetensors + state.json (written last, holding the tensors file's sha256)."""
    folder.mkdir(parents=True, exist_ok=True)
    # Crash safety: until the new state.json lands, the old one must still match a tensors file, so the
    # previous tensors are kept as state.prev.safetensors (renamed, not copied) and removed at the end.
    st, prev = folder / "state.safetensors", folder / PREV_STATE
    with contextlib.suppress(OSError, ValueError, KeyError):
        old = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        if st.exists() and old.get("state_sha256") == file_sha256(st):
            os.replace(st, prev)
    save_tensors(st, tensors)
    meta = dict(meta, state_sha256=file_sha256(st))
    atomic_write_text(folder / "state.json", json.dumps(meta, indent=2) + "\n")
    with contextlib.suppress(FileNotFoundError):
        prev.unlink()


PREV_STATE = "state.prev.safetensors"


def read_state(folder: Path) -> tuple[dict[str, torch.Tensor], dict]:
    js, st = folder / "state.json", folder / "state.safetensors"
    if not js.exists() or not (st.exists() or (folder / PREV_STATE).exists()):
        raise DataError("no training state to resume from (state.json/state.safetensors missing)", folder)
    try:
        meta = json.loads(js.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"unreadable training state ({exc})", js) from None
    for tensors_file in (st, folder / PREV_STATE):  # the previous tensors when a save was cut short
        if tensors_file.exists() and meta.get("state_sha256") == file_sha256(tensors_file):
            return load_tensors(tensors_file), meta
    raise DataError("training state is incomplete (checksum mismatch); cannot resume", folder)


# --- progress ------------------------------------------------------------------------------------------
class Eta:
    def __init__(self, total: int, done: int = 0):
        self.total, self.start_done, self.t0 = total, done, time.perf_counter()

    def __call__(self, done: int) -> float | None:
        n = done - self.start_done
        if n <= 0:
            return None
        return (time.perf_counter() - self.t0) / n * max(0, self.total - done)


class StopFlag:
    """Set by SIGINT (first Ctrl-C) or by code; the loop checkpoints and stops at the next step."""

    def __init__(self):
        self.event = threading.Event()
        self._old = None

    def __bool__(self) -> bool:
        return self.event.is_set()

    def set(self) -> None:
        self.event.set()

    @contextlib.contextmanager
    def on_sigint(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return

        def handler(signum, frame):
            if self.event.is_set():  # second Ctrl-C: abort now
                signal.signal(signal.SIGINT, self._old or signal.default_int_handler)
                raise KeyboardInterrupt
            log.warning("interrupt: stopping after this step and writing the last checkpoint")
            self.event.set()

        self._old = signal.signal(signal.SIGINT, handler)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, self._old)
