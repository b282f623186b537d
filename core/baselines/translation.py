"""Compact 2D image-to-image translation baselines of the paper's Table 3, applied slice by slice to LR stacks.

Each maps a source-domain LR slice (normalised by the study's 99.5th percentile, as V-AMA) to the target
domain's appearance; the adapted stack is then super-resolved by the frozen Gemini-GAN.
- `cyclegan` (Zhu et al. 2017): two ResNet translators G_st, G_ts and two PatchGAN discriminators;
  LSGAN + cycle L1 (10) + identity L1 (5). Unpaired: random slice crops of each domain.
- `bicyclegan` (Zhu et al. 2017b): translator G(x, z) with the latent z (8) broadcast to the input, encoder
  E(y) -> (mu, logvar); cVAE-GAN (masked L1 10 to the aligned target + KL 0.01 + GAN) and cLR-GAN (GAN on
  G(x, z ~ N(0, I)) + latent L1 0.5) with two discriminators. BicycleGAN is a paired method: its pairs are
  V-AMA's landmark-aligned target crops and loss masks (`core.train.vama.VamaData`). Inference: z = 0.
- `munit` (Huang et al. 2018): per domain a content encoder, a style encoder (style 8) and an AdaIN decoder;
  image and latent reconstructions (10, 1) + cross-domain GAN. Inference: source content, style 0 (the prior's
  mean) decoded by the target decoder.
The translators are residual (output = input + correction) and small (the V-AMA networks' size class).
Training shares V-AMA's data: domains read by `core.vama.domains.read_domain`, crops cut, padded and flipped
by `VamaData`'s helpers (BicycleGAN: its aligned pairs).
A trained translator is `model.safetensors` (the inference networks only) + `config.json`
(kind "gemini-cmr-translator").
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from gemini_cmr.core.errors import DataError, ModelError
from gemini_cmr.core.io.atomic import atomic_write_text
from gemini_cmr.core.models.store import (
    file_sha256,
    load_state_checked,
    load_tensors,
    save_tensors,
    state_to_tensors,
)
from gemini_cmr.core.models.vama import PatchDiscriminator, percentile_scale

log = logging.getLogger(__name__)
KIND = "gemini-cmr-translator"
METHODS = ("cyclegan", "bicyclegan", "munit")
MULTIPLE = 4
NZ = 8


def _res(c: int, norm: Callable[[int], nn.Module]) -> nn.Module:
    return _Residual(nn.Sequential(nn.Conv2d(c, c, 3, padding=1), norm(c), nn.ReLU(inplace=True),
                                   nn.Conv2d(c, c, 3, padding=1), norm(c)))


class _Residual(nn.Module):
    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x):
        return x + self.body(x)


def _inorm(c: int) -> nn.Module:
    return nn.InstanceNorm2d(c, affine=True)


class Translator(nn.Module):
    """ResNet translator (CycleGAN's generator, compact): conv7, 2 stride-2 downs, residual blocks, 2 ups,
    conv7; `in_extra` extra input channels (BicycleGAN's z); residual output."""

    def __init__(self, ch: int = 16, blocks: int = 3, in_extra: int = 0):
        super().__init__()
        c = ch
        self.net = nn.Sequential(
            nn.Conv2d(1 + in_extra, c, 7, padding=3), _inorm(c), nn.ReLU(inplace=True),
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), _inorm(2 * c), nn.ReLU(inplace=True),
            nn.Conv2d(2 * c, 4 * c, 3, stride=2, padding=1), _inorm(4 * c), nn.ReLU(inplace=True),
            *[_res(4 * c, _inorm) for _ in range(blocks)],
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(4 * c, 2 * c, 3, padding=1), _inorm(2 * c),
            nn.ReLU(inplace=True),
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(2 * c, c, 3, padding=1), _inorm(c),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, 1, 7, padding=3),
        )

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        inp = x if z is None else torch.cat([x, z[:, :, None, None].expand(-1, -1, *x.shape[-2:])], 1)
        return x + self.net(inp)


class LatentEncoder(nn.Module):
    """BicycleGAN's E and MUNIT's style encoder: strided convs, global average pool -> (mu, logvar)."""

    def __init__(self, ch: int = 16, nz: int = NZ):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, ch, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ch, 2 * ch, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * ch, 4 * ch, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True),
            nn.AdaptiveAvgPool2d(1))
        self.mu = nn.Linear(4 * ch, nz)
        self.logvar = nn.Linear(4 * ch, nz)

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.net(y).flatten(1)
        return self.mu(h), self.logvar(h)


class _AdaIN(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.c = c
        self.norm = nn.InstanceNorm2d(c, affine=False)
        self.params: torch.Tensor | None = None  # (B, 2c), set by the decoder

    def forward(self, x):
        gamma, beta = self.params[:, :self.c], self.params[:, self.c:]
        return self.norm(x) * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]


class MunitDecoder(nn.Module):
    """Content (B, 4c, h/4, w/4) + style (B, NZ) -> image: AdaIN residual blocks, 2 ups, conv7."""

    def __init__(self, ch: int = 16, blocks: int = 2, nz: int = NZ):
        super().__init__()
        c4 = 4 * ch
        self.adains = [_AdaIN(c4) for _ in range(2 * blocks)]
        self.res = nn.ModuleList(
            _Residual(nn.Sequential(nn.Conv2d(c4, c4, 3, padding=1), self.adains[2 * i], nn.ReLU(inplace=True),
                                    nn.Conv2d(c4, c4, 3, padding=1), self.adains[2 * i + 1]))
            for i in range(blocks))
        self.mlp = nn.Sequential(nn.Linear(nz, 64), nn.ReLU(inplace=True), nn.Linear(64, 2 * c4 * len(self.adains)))
        self.up = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c4, 2 * ch, 5, padding=2), nn.GroupNorm(1, 2 * ch),
            nn.ReLU(inplace=True),
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(2 * ch, ch, 5, padding=2), nn.GroupNorm(1, ch),
            nn.ReLU(inplace=True), nn.Conv2d(ch, 1, 7, padding=3))

    def forward(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        p = self.mlp(style)
        n = 2 * self.adains[0].c
        for i, a in enumerate(self.adains):
            a.params = p[:, i * n:(i + 1) * n]
        h = content
        for r in self.res:
            h = r(h)
        return self.up(h)


class ContentEncoder(nn.Module):
    def __init__(self, ch: int = 16, blocks: int = 2):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, ch, 7, padding=3), _inorm(ch), nn.ReLU(inplace=True),
            nn.Conv2d(ch, 2 * ch, 4, stride=2, padding=1), _inorm(2 * ch), nn.ReLU(inplace=True),
            nn.Conv2d(2 * ch, 4 * ch, 4, stride=2, padding=1), _inorm(4 * ch), nn.ReLU(inplace=True),
            *[_res(4 * ch, _inorm) for _ in range(blocks)])

    def forward(self, x):
        return self.net(x)


class MunitTranslator(nn.Module):
    """The inference part of MUNIT s -> t: source content encoder + target decoder (style 0), residual."""

    def __init__(self, ch: int = 16, blocks: int = 2):
        super().__init__()
        self.content_s = ContentEncoder(ch, blocks)
        self.decoder_t = MunitDecoder(ch, blocks)

    def forward(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        if style is None:
            style = x.new_zeros((x.shape[0], NZ))
        return x + self.decoder_t(self.content_s(x), style)


def build(method: str, ch: int = 16, blocks: int = 3) -> nn.Module:
    """The inference network of a method (what `model.safetensors` holds)."""
    if method == "cyclegan":
        return Translator(ch, blocks)
    if method == "bicyclegan":
        return Translator(ch, blocks, in_extra=NZ)
    if method == "munit":
        return MunitTranslator(ch, max(1, blocks - 1))
    raise ModelError(f"unknown translation method {method!r} (use one of {', '.join(METHODS)})")


# --- training ------------------------------------------------------------------------------------------
def _lsgan(d_out: torch.Tensor, real: bool) -> torch.Tensor:
    return ((d_out - (1.0 if real else 0.0)) ** 2).mean()


def _adam(*mods: nn.Module, lr: float) -> torch.optim.Adam:
    return torch.optim.Adam([p for m in mods for p in m.parameters()], lr=lr, betas=(0.5, 0.999))


class TranslationTrainer:
    """One method's networks, optimisers and `step(src, tgt_unpaired, tgt_aligned, mask) -> losses`."""

    def __init__(self, method: str, ch: int = 16, blocks: int = 3, lr: float = 2e-4, device: str = "cpu"):
        self.method, self.device = method, torch.device(device)
        self.G = build(method, ch, blocks).to(self.device)
        dev = self.device
        if method == "cyclegan":
            self.G_ts = Translator(ch, blocks).to(dev)
            self.D_t, self.D_s = PatchDiscriminator(2 * ch).to(dev), PatchDiscriminator(2 * ch).to(dev)
            self.opt_g = _adam(self.G, self.G_ts, lr=lr)
            self.opt_d = _adam(self.D_t, self.D_s, lr=lr)
        elif method == "bicyclegan":
            self.E = LatentEncoder(ch).to(dev)
            self.D_vae, self.D_lr = PatchDiscriminator(2 * ch).to(dev), PatchDiscriminator(2 * ch).to(dev)
            self.opt_g = _adam(self.G, self.E, lr=lr)
            self.opt_d = _adam(self.D_vae, self.D_lr, lr=lr)
        else:  # munit: the inference net holds content_s + decoder_t; add style_s/t, content_t, decoder_s
            b = max(1, blocks - 1)
            self.content_t = ContentEncoder(ch, b).to(dev)
            self.decoder_s = MunitDecoder(ch, b).to(dev)
            self.style_s, self.style_t = LatentEncoder(ch).to(dev), LatentEncoder(ch).to(dev)
            self.D_t, self.D_s = PatchDiscriminator(2 * ch).to(dev), PatchDiscriminator(2 * ch).to(dev)
            self.opt_g = _adam(self.G, self.content_t, self.decoder_s, self.style_s, self.style_t, lr=lr)
            self.opt_d = _adam(self.D_t, self.D_s, lr=lr)

    def _t(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

    def _d_step(self, pairs: list[tuple[nn.Module, torch.Tensor, torch.Tensor]]) -> float:
        loss = sum(0.5 * (_lsgan(d(real), True) + _lsgan(d(fake.detach()), False)) for d, real, fake in pairs)
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        return float(loss.detach())

    def step(self, src: np.ndarray, tgt: np.ndarray, tgt_aligned: np.ndarray | None = None,
             mask: np.ndarray | None = None) -> dict:
        """One update; `tgt_aligned`/`mask` (paired crops) are needed by BicycleGAN only."""
        s, t = self._t(src), self._t(tgt)
        ta, m = (None, None) if tgt_aligned is None else (self._t(tgt_aligned), self._t(mask))
        if self.method == "cyclegan":
            fake_t, fake_s = self.G(s), self.G_ts(t)
            loss = (_lsgan(self.D_t(fake_t), True) + _lsgan(self.D_s(fake_s), True)
                    + 10 * (F.l1_loss(self.G_ts(fake_t), s) + F.l1_loss(self.G(fake_s), t))
                    + 5 * (F.l1_loss(self.G(t), t) + F.l1_loss(self.G_ts(s), s)))
            d_pairs = [(self.D_t, t, fake_t), (self.D_s, s, fake_s)]
        elif self.method == "bicyclegan":
            mu, logvar = self.E(ta)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            fake_vae = self.G(s, z)
            z_r = torch.randn_like(mu)
            fake_lr = self.G(s, z_r)
            l1 = ((fake_vae - ta).abs() * m).sum() / m.sum().clamp_min(1.0)
            kl = -0.5 * torch.mean(1 + logvar - mu**2 - logvar.exp())
            mu_r, _ = self.E(fake_lr)
            loss = (_lsgan(self.D_vae(fake_vae), True) + _lsgan(self.D_lr(fake_lr), True) + 10 * l1
                    + 0.01 * kl + 0.5 * F.l1_loss(mu_r, z_r))
            d_pairs = [(self.D_vae, t, fake_vae), (self.D_lr, t, fake_lr)]
        else:
            c_s, c_t = self.G.content_s(s), self.content_t(t)
            st_s, _ = self.style_s(s)
            st_t, _ = self.style_t(t)
            rec = F.l1_loss(s + self.decoder_s(c_s, st_s), s) + F.l1_loss(t + self.G.decoder_t(c_t, st_t), t)
            z_s, z_t = torch.randn_like(st_s), torch.randn_like(st_t)
            fake_t = s + self.G.decoder_t(c_s, z_t)
            fake_s = t + self.decoder_s(c_t, z_s)
            lat = (F.l1_loss(self.content_t(fake_t), c_s.detach()) + F.l1_loss(self.G.content_s(fake_s), c_t.detach())
                   + F.l1_loss(self.style_t(fake_t)[0], z_t) + F.l1_loss(self.style_s(fake_s)[0], z_s))
            loss = _lsgan(self.D_t(fake_t), True) + _lsgan(self.D_s(fake_s), True) + 10 * rec + lat
            d_pairs = [(self.D_t, t, fake_t), (self.D_s, s, fake_s)]
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        loss_d = self._d_step(d_pairs)
        return {"loss": float(loss.detach()), "loss_d": loss_d}


def save_translator(folder: str | Path, method: str, net: nn.Module, config: dict) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "model.safetensors"
    save_tensors(weights, state_to_tensors(net), metadata={"kind": KIND, "format": "pt"})
    atomic_write_text(folder / "config.json", json.dumps({**config, "kind": KIND, "version": 1,
                                                          "method": method}, indent=2) + "\n")
    return weights


def unpaired_batch(studies: list, n: int, crop: int, rng: np.random.Generator) -> np.ndarray:
    """n random (normalised) slice crops of a domain's studies, (n, 1, crop, crop) float32, with V-AMA's
    crop/pad/flip helpers."""
    from gemini_cmr.core.train.vama import VamaData

    out = []
    for _ in range(n):
        s = studies[int(rng.integers(len(studies)))]
        a = s.normalised[int(rng.integers(s.image.shape[0])), int(rng.integers(s.image.shape[1]))]
        y0, x0, ch, cw = VamaData._crop_box(a.shape, crop, rng)
        c = VamaData._flip([a[y0:y0 + ch, x0:x0 + cw]], rng)[0]
        out.append(VamaData._fit(c, crop))
    return np.stack(out)[:, None].astype(np.float32)


def train_translator(method: str, source_dir: str | Path, target_dir: str | Path, out: str | Path,
                     steps: int = 200, batch_size: int = 4, crop: int = 64, ch: int = 16, blocks: int = 3,
                     lr: float = 2e-4, seed: int = 0, device: str = "cpu", gemini: str | None = None,
                     say: Callable[[str], None] | None = None) -> dict:
    """Train `method` source -> target on the `train` splits; writes OUT/model.safetensors + config.json."""
    from gemini_cmr.core.train.vama import VamaData, gemini_segmenter
    from gemini_cmr.core.vama.domains import read_domain

    if method not in METHODS:
        raise ModelError(f"unknown translation method {method!r} (use one of {', '.join(METHODS)})")
    t0 = time.perf_counter()
    source = read_domain(source_dir, "source", "train")
    target = read_domain(target_dir, "target", "train")
    data = None
    if method == "bicyclegan":  # paired: V-AMA's landmark-aligned target crops and loss masks
        segment = gemini_segmenter(gemini, device) if any(s.labels is None for s in source + target) else None
        data = VamaData(source, target, segment)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    tr = TranslationTrainer(method, ch, blocks, lr, device)
    history = []
    for step in range(1, steps + 1):
        if data is not None:
            tgt_al, src, mask = data.pair_batch(batch_size, crop, rng)
        else:
            src = unpaired_batch(source, batch_size, crop, rng)
            tgt_al = mask = None
        tgt = unpaired_batch(target, batch_size, crop, rng)
        losses = tr.step(src, tgt, tgt_al, mask)
        if not np.isfinite(losses["loss"]):
            raise DataError(f"{method}: training diverged at step {step} (loss {losses['loss']})", out)
        history.append(losses)
        if say and (step % 50 == 0 or step == steps):
            say(f"{method}: step {step}/{steps} loss {losses['loss']:.4f}")
    elapsed = time.perf_counter() - t0
    cfg = {"model": {"ch": ch, "blocks": blocks},
           "normalisation": {"method": "lr_percentile", "percentile": 99.5,
                             "target_scale": float(np.median([t.scale for t in target])),
                             "output_units": "source"},
           "training": {"steps": steps, "batch_size": batch_size, "crop": crop, "lr": lr, "seed": seed,
                        "source": str(source_dir), "target": str(target_dir), "seconds": elapsed,
                        "first_loss": history[0]["loss"], "last_loss": history[-1]["loss"]}}
    save_translator(out, method, tr.G, cfg)
    return {"steps": steps, "seconds": elapsed, "history": history}


class TranslatorAdapter:
    """A trained translator applied slice by slice: (T, Z, Y, X) source image -> adapted, source units."""

    def __init__(self, folder: str | Path, device: str = "cpu"):
        folder = Path(folder)
        cfg_path, weights = folder / "config.json", folder / "model.safetensors"
        try:
            self.config = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"cannot read the translator config: {exc}", cfg_path) from None
        if not isinstance(self.config, dict) or self.config.get("kind") != KIND:
            raise ModelError("not a translator model", cfg_path)
        m = self.config.get("model", {})
        self.method = self.config.get("method")
        self.net = build(self.method, int(m.get("ch", 16)), int(m.get("blocks", 3)))
        load_state_checked(self.net, load_tensors(weights), weights)
        self.device = torch.device(device)
        self.net.to(self.device).eval()
        self.model_id = file_sha256(weights)

    @torch.no_grad()
    def adapt_array(self, image: np.ndarray, batch: int = 16) -> np.ndarray:
        image = np.asarray(image, dtype=np.float32)
        t, z, y, x = image.shape
        scale = percentile_scale(image, float(self.config["normalisation"].get("percentile", 99.5)))
        py, px = (-y) % MULTIPLE, (-x) % MULTIPLE
        slices = np.pad(image.reshape(t * z, 1, y, x) / scale, ((0, 0), (0, 0), (0, py), (0, px)), mode="edge")
        out = np.empty((t * z, y, x), np.float32)
        for i in range(0, t * z, batch):
            chunk = torch.from_numpy(np.ascontiguousarray(slices[i:i + batch])).to(self.device)
            if self.method == "bicyclegan":
                res = self.net(chunk, chunk.new_zeros((chunk.shape[0], NZ)))
            else:
                res = self.net(chunk)
            out[i:i + batch] = res[:, 0, :y, :x].float().cpu().numpy()
        return (out * np.float32(scale)).reshape(t, z, y, x)
