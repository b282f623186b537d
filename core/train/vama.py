"""Training a V-AMA adapter (spec section 4): unlabelled source-domain LR studies -> target domain.

Data: `--source` and `--target` are each what `super-resolve` reads (`core.vama.domains.read_domain`): a
folder of studies (DICOM series, zips, NIfTI files, subject folders), one study, a paired dataset folder, or
a cohort layout (`acdc:`, `mnms:`, `ukbb:`, `pairs:`; `cohort_studies`). Every study is used in its own
slice frame, so orientation differences between and within the domains need no user action.

Schedule (paper section 3.2): stage 1 trains the variational target network G_t with D_t on batches that
hold aligned target and source crops (I_i = I_t "+" I_s, concatenated along the batch); stage 2 freezes G_t
and trains the variational source mixture network G_s with D_s on source crops, G_t taking I_s exactly as
at inference. `epochs` and `max_steps` apply to each stage.

Alignment: every labelled (or segmented) phase of a source study is paired with a target study in turn
(so a few long cines meet many target subjects) at the target's labelled phase nearest in relative LV-cavity
volume (end-diastole-like with end-diastole-like); the six-landmark rigid transform source -> target
(`core.vama.alignment`, mirrored when that fits better: slice frames carry no handedness) is estimated and
the target is resampled onto the source grid with its inverse, so that every source crop has an
anatomically matching target crop: the pixel losses (MSE, L1) compare the network output with that aligned
target (within the region the target covers) and the discriminators judge appearance, not pose. This is
what the paper's alignment block is for ("a correct mapping between them"); see docs/vama.md.

Where a study has no labels with the LV myocardium and the RV cavity, its phases are segmented by
Gemini-GAN (`core.predict.Predictor`, the `--gemini` model or the bundled one; `segment_phases` of them,
evenly spaced from ED). An optional identity penalty (`loss_weights["identity"]`: L1 between output and
input over the whole crop) keeps the adapter close to the identity where the data do not ask for more.
After training, when source studies carry the user's labels, the adapter's effect on Gemini-GAN's Dice on
them is measured and recorded in the adapter's config (`evaluation.source_labelled`).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gemini_cmr.core.device import resolve_device
from gemini_cmr.core.errors import Cancelled, DataError
from gemini_cmr.core.geometry import resample
from gemini_cmr.core.io.atomic import atomic_write_text
from gemini_cmr.core.io.jsonio import jsonable
from gemini_cmr.core.models.vama import (
    DEFAULT_LOSS,
    PERCENTILE,
    VAMA,
    kl_standard_normal,
    load_tensors,
    record_evaluation,
    save_adapter,
    save_tensors,
    sha256_file,
)
from gemini_cmr.core.study import Grid, Study, StudyMeta
from gemini_cmr.core.train.runs import (
    ADAPTER_WEIGHTS,
    CHECKPOINT_JSON,
    CHECKPOINT_RNG,
    CHECKPOINT_WEIGHTS,
    CHECKPOINTS_DIR,
)
from gemini_cmr.core.vama import MIN_SLICES  # 2D slices per domain; training refuses fewer (docs/vama.md)
from gemini_cmr.core.vama.alignment import landmarks, resample_aligned, rigid_from_landmarks
from gemini_cmr.core.vama.domains import DomainStudy, check_domains, domain_description, read_domain

log = logging.getLogger(__name__)

AIR_LEVEL = 0.1  # normalised intensity separating air/lung from tissue in the background loss mask
MEASURE_STUDIES = 8  # labelled source studies scored without and with the adapter after training

ProgressFn = Callable[[dict], None]


Segmenter = Callable[[DomainStudy, list[int]], tuple[dict[int, np.ndarray], np.ndarray, Grid]]


def gemini_segmenter(gemini: str | None, device: str, chunk: int = 5) -> Segmenter:
    """Labels for studies without usable labels: Gemini-GAN's own segmentation of the given phases
    (`segment(study, phases)` -> ({phase: labels on the study's grid}, SR labels of the ED phase (else the
    first one), SR grid))."""
    cache = {}

    def segment(ds: DomainStudy, phases: list[int]) -> tuple[dict[int, np.ndarray], np.ndarray, Grid]:
        if "p" not in cache:
            from gemini_cmr.core.predict import Predictor

            cache["p"] = Predictor.load(gemini, device=device)
        out: dict[int, np.ndarray] = {}
        first = None
        for start in range(0, len(phases), chunk):
            part = phases[start:start + chunk]
            study = Study(image=ds.image[part], affine=ds.grid.affine, meta=StudyMeta(patient_id=ds.name))
            pred = cache["p"].predict(study, phases=list(range(len(part))))
            for i, t in enumerate(part):
                sr_lab = np.asarray(pred.sr_labels[i]).astype(np.uint8)
                if first is None or t == ds.ed_phase:
                    first = (sr_lab, pred.sr_grid)
                out[t] = resample(sr_lab, pred.sr_grid, ds.grid, order=0)
        return out, first[0], first[1]

    return segment


def cohort_studies(kind: str, root: Path) -> list[tuple[str, str, Callable[[], Study]]]:
    """The subjects of a cohort layout (`acdc:`, `mnms:`, `ukbb:`, `pairs:`) as (id, split, loader), read
    by `core.train.lr_data` as for `train gemini`."""
    from gemini_cmr.core.train.lr_data import lr_subjects

    return [(s.sid, s.split, s.load) for s in lr_subjects(kind, root)]


def _segment_phases(ds: DomainStudy, n: int) -> list[int]:
    """`n` phases evenly spaced through the cycle from ED (all when the cine has fewer)."""
    n_t = ds.image.shape[0]
    if n >= n_t:
        return list(range(n_t))
    return sorted({(ds.ed_phase + round(i * n_t / n)) % n_t for i in range(n)})


def gemini_model_id(gemini: str | None) -> str | None:
    """The id (sha256 of the weights, as `core.models.store`) of the Gemini-GAN model the adapter is
    trained for: `gemini` or the bundled model; None (with a warning) when neither exists."""
    from gemini_cmr.core.models import store

    if gemini is None and not store.BUNDLED_MODEL_DIR.is_dir():
        log.warning("no bundled Gemini-GAN model: the adapter records gemini_model_id = null")
        return None
    weights, _ = store.model_files(store.BUNDLED_MODEL_DIR if gemini is None else gemini)
    return store.file_sha256(weights)


# --- the training data --------------------------------------------------------------------------------
def _relative_lv(ds: DomainStudy) -> dict[int, float]:
    """Per labelled phase: LV cavity size relative to the study's labelled range (1 = largest, ED-like;
    0 = smallest, ES-like); a single labelled phase is 1."""
    lv = {t: float((lab == 1).sum()) for t, lab in ds.phase_labels.items()}
    hi, lo = max(lv.values()), min(lv.values())
    return {t: (v - lo) / (hi - lo) if hi > lo else 1.0 for t, v in lv.items()}


class VamaData:
    """Normalised slices of both domains; every labelled phase of a source study is paired with a target
    study (in turn) and its matching labelled phase, the target moved onto the source grid by the inverse of
    the landmark transform (source -> target).

    Moving the target rather than the source is the same alignment, but the networks then see source
    slices untouched and at their native pixel size, exactly as at inference; the target image is
    interpolated in-plane only (nearest slice through-plane), so thick slices are not blended.

    Pixel losses use a mask: where the moved target has data and its label equals the source's label
    (background, LV cavity, myocardium, RV). Six landmarks on 8-10 mm slices leave millimetres of
    misregistration between two different hearts; without the mask the networks would learn to blend
    blood with myocardium at every edge. Pairs are therefore the labelled phases of both studies.
    """

    def __init__(self, source: list[DomainStudy], target: list[DomainStudy],
                 segment: Segmenter | Callable | None = None, progress: ProgressFn | None = None,
                 segment_phases: int = 10):
        self.source, self.target = source, target
        self.alignments = []  # one per (source, target) pair used
        self.alignment_rows = []
        self.aligned = []  # per source: (P, Z_s, Y_s, X_s) float16 normalised targets on the source grid
        self.masks = []    # per source: (P, Z_s, Y_s, X_s) uint8 1 where the pixel losses apply
        self.pairs = []    # per source: [(target index, source phase, target phase)] of length P

        todo = [ds for ds in source + target if not ds.has_landmark_labels]
        for n, ds in enumerate(todo):
            if segment is None:
                raise DataError(f"study {ds.name} has no labels with the LV myocardium and the RV cavity for "
                                "the alignment landmarks")
            phases = _segment_phases(ds, segment_phases)
            if progress is not None:
                progress({"event": "segment", "study": ds.name, "phases": len(phases), "index": n + 1,
                          "total": len(todo)})
            labels, sr_labels, sr = segment(ds, phases)
            ds.phase_labels = {t: lab for t, lab in labels.items() if lab.any()}
            ds.segmentation = (sr_labels, sr)  # landmarks from the finer SR segmentation
            if not ds.phase_labels:
                raise DataError(f"study {ds.name}: Gemini-GAN found no heart to pair with the other domain")

        def points(ds: DomainStudy) -> np.ndarray:
            lab, grid = ds.segmentation or (ds.labels, ds.grid)
            return landmarks(lab, grid, ds.name)

        tgt_points = {}
        tgt_rel = {}
        cache = {}
        for i, s in enumerate(source):
            s_points, s_rel = points(s), _relative_lv(s)
            pairs, moved_all, mask_all = [], [], []
            for idx, a in enumerate(sorted(s.phase_labels)):
                j = (i + len(source) * idx) % len(target)
                t = target[j]
                if j not in tgt_points:
                    tgt_points[j], tgt_rel[j] = points(t), _relative_lv(t)
                b = min(tgt_rel[j], key=lambda tb, j=j, a=a: (abs(tgt_rel[j][tb] - s_rel[a]), tb))
                if (i, j) not in cache:
                    al = rigid_from_landmarks(s_points, tgt_points[j], allow_mirror=True)
                    inside = resample_aligned(np.ones(t.grid.shape, np.uint8), t.grid, s.grid,
                                              np.linalg.inv(al.transform), order=0, nearest_slice=True)
                    cache[i, j] = (al, inside.astype(bool))
                    self.alignments.append(al)
                    self.alignment_rows.append({"source": s.name, "target": t.name, "rms_mm": al.rms_mm,
                                                "rotation_deg": al.rotation_deg, "mirrored": al.mirrored})
                al, inside = cache[i, j]
                inverse = np.linalg.inv(al.transform)
                moved = resample_aligned(t.normalised[b], t.grid, s.grid, inverse, order=1,
                                         nearest_slice=True).astype(np.float32)
                moved_lab = resample_aligned(t.phase_labels[b], t.grid, s.grid, inverse, order=0,
                                             nearest_slice=True)
                s_lab = s.phase_labels[a]
                agree = (moved_lab == s_lab) & inside
                # background is many tissues: there, also require both to be air/lung or both tissue
                s_img = s.normalised[a]
                agree &= (s_lab > 0) | ((moved > AIR_LEVEL) == (s_img > AIR_LEVEL))
                pairs.append((j, a, b))
                moved_all.append(moved.astype(np.float16))  # half the memory; crops are cast back
                mask_all.append(agree.astype(np.uint8))
            self.aligned.append(np.stack(moved_all))
            self.masks.append(np.stack(mask_all))
            self.pairs.append(pairs)
            agreement = float(np.mean([m[ins].mean() for m, (j, _, _) in zip(mask_all, pairs)
                                       for ins in [cache[i, j][1]] if ins.any()] or [0.0]))
            rms = [cache[i, j][0].rms_mm for j in sorted({j for j, _, _ in pairs})]
            log.info("aligned %s with %d target studies: rms %.1f-%.1f mm, %d phase pairs, label agreement %.2f",
                     s.name, len(rms), min(rms), max(rms), len(pairs), agreement)
            if progress is not None:
                progress({"event": "align", "source": s.name, "targets": len(rms), "rms_mm": float(np.median(rms)),
                          "phase_pairs": len(pairs), "label_agreement": agreement, "index": i + 1,
                          "total": len(source)})
        self.source_norm = [s.normalised for s in source]
        self.target_scale = float(np.median([t.scale for t in target]))

    @staticmethod
    def _crop_box(shape: tuple[int, int], crop: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        h, w = shape
        ch, cw = min(crop, h), min(crop, w)
        y0 = int(rng.integers(0, h - ch + 1))
        x0 = int(rng.integers(0, w - cw + 1))
        return y0, x0, ch, cw

    @staticmethod
    def _fit(a: np.ndarray, crop: int) -> np.ndarray:
        """Pad (edge) a 2D crop up to crop x crop when the slice is smaller."""
        ph, pw = crop - a.shape[0], crop - a.shape[1]
        if ph > 0 or pw > 0:
            a = np.pad(a, ((0, max(ph, 0)), (0, max(pw, 0))), mode="edge")
        return a

    @staticmethod
    def _flip(arrs: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
        if rng.random() < 0.5:
            arrs = [a[:, ::-1] for a in arrs]
        if rng.random() < 0.5:
            arrs = [a[::-1, :] for a in arrs]
        return arrs

    def pair_batch(self, n: int, crop: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """n (aligned target crop, source crop, loss mask) triples at the same place of the same source
        slice and paired cardiac phase, each (n, 1, crop, crop) float32."""
        tgt, src, msk = [], [], []
        for _ in range(n):
            i = int(rng.integers(len(self.source)))
            p = int(rng.integers(len(self.pairs[i])))
            k = int(rng.integers(self.aligned[i].shape[1]))
            a_s = self.source_norm[i][self.pairs[i][p][1], k]
            y0, x0, ch, cw = self._crop_box(a_s.shape, crop, rng)
            box = (slice(y0, y0 + ch), slice(x0, x0 + cw))
            crops = self._flip([self.aligned[i][p, k][box], a_s[box], self.masks[i][p, k][box]], rng)
            for lst, c in zip((tgt, src, msk), crops):
                lst.append(self._fit(c, crop))
        return tuple(np.stack(a)[:, None].astype(np.float32) for a in (tgt, src, msk))


# --- losses and steps ---------------------------------------------------------------------------------
def _gan(logits: torch.Tensor, real: bool) -> torch.Tensor:
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


def _masked_mean(err: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return err.mean()
    return (err * mask).sum() / mask.sum().clamp_min(1.0)


def generator_loss(out: torch.Tensor, ref: torch.Tensor, res: dict, d_logits_fake: torch.Tensor, w: dict,
                   mask: torch.Tensor | None = None, inp: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """w_mse * MSE(ref, out) + w_kl * KL + w_l1 * L1(ref, out) + w_gan * GAN (generator side)
    [+ w_identity * L1(inp, out) over every pixel: a penalty towards the identity].

    `mask` (same shape as `out`, 0/1) restricts the pixel losses to where the reference is valid.
    """
    mse = _masked_mean((out - ref) ** 2, mask)
    l1 = _masked_mean((out - ref).abs(), mask)
    kl = kl_standard_normal(res["mu"], res["logvar"])
    gan = _gan(d_logits_fake, True)
    total = w["mse"] * mse + w["kl"] * kl + w["l1"] * l1 + w["gan"] * gan
    losses = {"total": total, "mse": mse, "kl": kl, "l1": l1, "gan": gan}
    if inp is not None and w.get("identity", 0.0):
        losses["identity"] = (out - inp).abs().mean()
        losses["total"] = total + w["identity"] * losses["identity"]
    return losses


def discriminator_loss(d, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (_gan(d(real), True) + _gan(d(fake.detach()), False))


class VamaTrainer:
    """Holds the networks, optimisers (Adam lr 2e-4, beta1 0.5) and the step counters."""

    def __init__(self, model: VAMA, device: str | torch.device = "cpu", lr: float = 2e-4,
                 loss_weights: dict | None = None):
        self.model = model.to(device)
        self.device = torch.device(device)
        self.w = dict(DEFAULT_LOSS) | dict(loss_weights or {})
        betas = (0.5, 0.999)
        self.opt = {
            "g_t": torch.optim.Adam(model.g_t.parameters(), lr=lr, betas=betas),
            "d_t": torch.optim.Adam(model.d_t.parameters(), lr=lr, betas=betas),
            "g_s": torch.optim.Adam(model.g_s.parameters(), lr=lr, betas=betas),
            "d_s": torch.optim.Adam(model.d_s.parameters(), lr=lr, betas=betas),
        }

    def _t(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

    def step_target(self, tgt: np.ndarray, src: np.ndarray, mask: np.ndarray) -> dict[str, float]:
        """One G_t/D_t update. I_i = [I_t ; I_s] (batch concatenation of aligned crops); the reference of
        both halves is the aligned I_t (the source half's pixel losses only inside `mask`: target data with
        the same label); D_t: real = I_t, fake = G_t(I_i)."""
        m = self.model
        m.g_t.train()
        x_t, x_s = self._t(tgt), self._t(src)
        x_i = torch.cat([x_t, x_s], dim=0)
        ref = torch.cat([x_t, x_t], dim=0)
        loss_mask = torch.cat([torch.ones_like(x_t), self._t(mask)], dim=0)
        res = m.g_t(x_i, stochastic=True)
        return self._adversarial_update("t", res, real=x_t, ref=ref, loss_mask=loss_mask, inp=x_i)

    def step_source(self, tgt: np.ndarray, src: np.ndarray, mask: np.ndarray) -> dict[str, float]:
        """One G_s/D_s update. G_t is frozen and encodes I_s, as at inference; G_s mixes its posterior and
        features; reference = the aligned I_t (inside `mask`); D_s: real = I_t."""
        m = self.model
        m.g_t.eval()
        m.g_s.train()
        x_t, x_s, loss_mask = self._t(tgt), self._t(src), self._t(mask)
        with torch.no_grad():
            t_res = m.g_t(x_s, stochastic=False)
        res = m.g_s(x_s, t_res, stochastic=True)
        return self._adversarial_update("s", res, real=x_t, ref=x_t, loss_mask=loss_mask, inp=x_s)

    def _adversarial_update(self, net: str, res: dict, real: torch.Tensor, ref: torch.Tensor,
                            loss_mask: torch.Tensor, inp: torch.Tensor | None = None) -> dict[str, float]:
        """One D_<net> step (real vs res["out"]), then one G_<net> step on its generator loss."""
        disc = getattr(self.model, f"d_{net}")
        self.opt[f"d_{net}"].zero_grad(set_to_none=True)
        d_loss = discriminator_loss(disc, real, res["out"])
        d_loss.backward()
        self.opt[f"d_{net}"].step()
        self.opt[f"g_{net}"].zero_grad(set_to_none=True)
        losses = generator_loss(res["out"], ref, res, disc(res["out"]), self.w, loss_mask, inp)
        losses["total"].backward()
        self.opt[f"g_{net}"].step()
        return {k: float(v.detach()) for k, v in losses.items()} | {"d": float(d_loss.detach())}

    # --- checkpoint state as safetensors + JSON ---
    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        opt_meta = {}
        for name, opt in self.opt.items():
            sd = opt.state_dict()
            opt_meta[name] = {"param_groups": sd["param_groups"], "state": {}}
            for idx, st in sd["state"].items():
                opt_meta[name]["state"][str(idx)] = sorted(st)
                for key, val in st.items():
                    tensors[f"opt.{name}.{idx}.{key}"] = torch.as_tensor(val)
        return tensors, opt_meta

    def load_state(self, tensors: dict[str, torch.Tensor], opt_meta: dict) -> None:
        model_sd = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        self.model.load_state_dict(model_sd)
        for name, opt in self.opt.items():
            meta = opt_meta[name]
            state = {int(idx): {key: tensors[f"opt.{name}.{idx}.{key}"].to("cpu" if key == "step" else self.device)
                                for key in keys}
                     for idx, keys in meta["state"].items()}
            opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


# --- the whole run --------------------------------------------------------------------------------------
@dataclass
class TrainSettings:
    epochs: int = 20
    max_steps: int | None = None
    steps_per_epoch: int | None = None
    batch_size: int = 8
    crop: int = 64
    lr: float = 2e-4
    seed: int = 0
    device: str = "cpu"
    split: str = "train"
    min_slices: int = MIN_SLICES
    segment_phases: int = 10  # phases of an unlabelled study segmented by Gemini-GAN for the pairing
    identity_weight: float = 0.0  # L1 penalty between the adapter's output and its input
    measure: bool = True  # score Gemini-GAN with and without the adapter on labelled source studies


def measure_effect(adapter: str | Path, studies: list[DomainStudy], gemini: str | None = None,
                   device: str = "cpu") -> dict:
    """Gemini-GAN's Dice on the user's labels of `studies` (at most `MEASURE_STUDIES` of them; their labelled
    ED and ES phases, else their first two labelled phases; the labelled slices) without and with the
    adapter: {"studies", "phases", "before": {structure: mean}, "after": {...}}; a structure counts only
    where the labels hold it."""
    from gemini_cmr.core.engine import SuperResolver
    from gemini_cmr.core.evaluation.metrics import dice
    from gemini_cmr.core.study import STRUCTURES

    scores: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    n_phases = 0
    studies = studies[:MEASURE_STUDIES]
    for tag, adapt in (("before", None), ("after", str(adapter))):
        resolver = SuperResolver(model=gemini, adapter=adapt, device=device)
        for ds in studies:
            phases = sorted({t for t in (ds.ed_phase, ds.es_phase) if t in ds.reference}) or sorted(ds.reference)[:2]
            study = Study(image=ds.image, affine=ds.grid.affine,
                          meta=StudyMeta(patient_id=ds.name, ed_phase=ds.ed_phase, es_phase=ds.es_phase))
            res = resolver.run(study, phases=phases, meshes="none")
            for i, t in enumerate(res.phases):
                ks = np.flatnonzero(ds.reference[t].reshape(ds.reference[t].shape[0], -1).any(axis=1))
                truth, pred = ds.reference[t][ks], res.lr_labels[i][ks]  # the labelled slices only
                n_phases += tag == "before"
                for value, key in STRUCTURES.items():
                    if (truth == value).any():
                        scores[tag].setdefault(key, []).append(dice(pred, truth, value))
    return {"studies": len(studies), "phases": n_phases,
            "before": {k: float(np.mean(v)) for k, v in scores["before"].items()},
            "after": {k: float(np.mean(v)) for k, v in scores["after"].items()}}


def _emit(progress: ProgressFn | None, event: dict) -> None:
    if progress is not None:
        progress(event)


def train_vama(source_dir: str | Path, target_dir: str | Path, out: str | Path, gemini: str | None = None,
               settings: TrainSettings | None = None, resume: bool = False, model_cfg: dict | None = None,
               progress: ProgressFn | None = None, cancel: Callable[[], bool] | None = None) -> Path:
    """Train an adapter; writes `out/adapter.safetensors` + `out/config.json` and checkpoints under
    `out/checkpoints/`. Returns `out`."""
    st = settings or TrainSettings()
    out = Path(out)
    source_dir, target_dir = Path(source_dir), Path(target_dir)
    device = str(resolve_device(st.device))
    ckpt_w, ckpt_j = out / CHECKPOINTS_DIR / CHECKPOINT_WEIGHTS, out / CHECKPOINTS_DIR / CHECKPOINT_JSON
    if ckpt_j.exists() and not resume:
        raise DataError("the run folder already holds a V-AMA checkpoint: use --resume or another --out", out)
    if resume and not ckpt_j.exists():
        raise DataError(f"--resume given but there is no checkpoint ({CHECKPOINTS_DIR}/{CHECKPOINT_JSON})", out)

    source = read_domain(source_dir, "source", st.split, cohort_studies)
    target = read_domain(target_dir, "target", st.split, cohort_studies)
    check_domains(source, target, source_dir, target_dir, st.min_slices)
    described = {"source": domain_description(source, source_dir), "target": domain_description(target, target_dir)}
    _emit(progress, {"event": "data", "source_studies": len(source), "target_studies": len(target),
                     "source_slices": sum(s.n_slices for s in source),
                     "target_slices": sum(t.n_slices for t in target)})

    torch.manual_seed(st.seed)
    rng = np.random.default_rng(st.seed)
    need = any(not s.has_landmark_labels for s in source + target)
    segment = gemini_segmenter(gemini, device) if need else None
    data = VamaData(source, target, segment, progress, st.segment_phases)
    model = VAMA(model_cfg)
    trainer = VamaTrainer(model, device, st.lr, {"identity": st.identity_weight})

    n_slices = sum(s.n_slices for s in source)
    spe = st.steps_per_epoch or max(1, math.ceil(n_slices / st.batch_size))
    stage_steps = st.epochs * spe
    if st.max_steps is not None:
        stage_steps = min(stage_steps, int(st.max_steps))
    stage_steps = max(1, stage_steps)
    total = 2 * stage_steps
    step = 0
    history: list[dict] = []
    run_cfg = {
        "source": str(source_dir), "target": str(target_dir),
        "source_description": described["source"], "target_description": described["target"],
        "source_studies": [s.name for s in source], "target_studies": [t.name for t in target],
        "settings": {k: getattr(st, k) for k in st.__dataclass_fields__}, "loss_weights": trainer.w,
        "steps_per_epoch": spe, "stage_steps": stage_steps, "optimiser": "Adam(lr, betas=(0.5, 0.999))",
    }
    if resume:
        meta = json.loads(ckpt_j.read_text(encoding="utf-8"))
        if meta.get("model") != model.cfg:
            raise DataError("the checkpoint's model settings differ from this run's", ckpt_j)
        if meta["run"]["source_studies"] != run_cfg["source_studies"] or \
                meta["run"]["target_studies"] != run_cfg["target_studies"]:
            raise DataError("the checkpoint was trained on other source/target studies", ckpt_j)
        trainer.load_state(load_tensors(ckpt_w), meta["optimisers"])
        step, history = int(meta["step"]), list(meta.get("history", []))
        torch.set_rng_state(load_tensors(ckpt_w.with_name(CHECKPOINT_RNG))["torch"])
        rng.bit_generator.state = meta["numpy_rng"]
        _emit(progress, {"event": "resume", "step": step, "total_steps": total})
    gid = gemini_model_id(gemini)
    config = {
        "gemini_model_id": gid,
        "normalisation": {"method": "percentile", "percentile": PERCENTILE, "target_scale": data.target_scale,
                          "output_units": "source"},
        "training": run_cfg | {"seed": st.seed},
        "alignment": data.alignment_rows,
    }

    def checkpoint() -> None:
        tensors, opt_meta = trainer.state()
        save_tensors(ckpt_w, tensors, {"kind": "vama-checkpoint"})
        save_tensors(ckpt_w.with_name(CHECKPOINT_RNG), {"torch": torch.get_rng_state()})
        meta = {"kind": "vama-checkpoint", "version": 1, "model": model.cfg, "run": run_cfg, "step": step,
                "total_steps": total, "optimisers": opt_meta, "numpy_rng": rng.bit_generator.state,
                "history": history, "config": config}
        atomic_write_text(ckpt_j, json.dumps(jsonable(meta), indent=1))
        _emit(progress, {"event": "checkpoint", "step": step, "path": str(ckpt_w)})

    _emit(progress, {"event": "start", "step": step, "total_steps": total, "stage_steps": stage_steps,
                     "steps_per_epoch": spe, "device": device, "seed": st.seed})
    t0 = time.monotonic()
    acc: dict[str, list[float]] = {}
    half = max(1, st.batch_size // 2)
    while step < total:
        if cancel is not None and cancel():
            checkpoint()
            raise Cancelled("V-AMA training cancelled (checkpoint saved; --resume continues)")
        stage = "target" if step < stage_steps else "source"
        if stage == "target":
            losses = trainer.step_target(*data.pair_batch(half, st.crop, rng))
        else:
            losses = trainer.step_source(*data.pair_batch(st.batch_size, st.crop, rng))
        step += 1
        for k, v in losses.items():
            acc.setdefault(k, []).append(v)
        stage_step = step if stage == "target" else step - stage_steps
        if stage_step % spe == 0 or stage_step == stage_steps:
            mean = {k: float(np.mean(v)) for k, v in acc.items()}
            acc = {}
            epoch = math.ceil(stage_step / spe)
            history.append({"stage": stage, "epoch": epoch, "step": step, "losses": mean})
            _emit(progress, {"event": "epoch", "stage": stage, "epoch": epoch, "step": step,
                             "total_steps": total, "fraction": step / total, "losses": mean,
                             "elapsed_s": round(time.monotonic() - t0, 2)})
            checkpoint()
        else:
            _emit(progress, {"event": "step", "stage": stage, "step": step, "total_steps": total,
                             "fraction": step / total, "losses": losses})
    config["training"]["history"] = history
    save_adapter(out, model, config)
    labelled = [s for s in source if s.reference]
    if st.measure and labelled:
        _emit(progress, {"event": "measure", "studies": len(labelled)})
        effect = measure_effect(out, labelled, gemini, device)
        record_evaluation(out, {"source_labelled": effect})
        _emit(progress, {"event": "effect"} | effect)
    _emit(progress, {"event": "done", "step": step, "total_steps": total, "path": str(out),
                     "adapter_id": sha256_file(out / ADAPTER_WEIGHTS)})
    return out


