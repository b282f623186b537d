"""V-AMA networks: KL closed form, mixture posterior, size-agnostic latent, residual outputs, injection."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from gemini_cmr.core.models.vama import (
    VAMA,
    VariationalUNet,
    kl_standard_normal,
    mixture_posterior,
    model_config,
)

SMALL = {"base_channels": 4, "depth": 2, "latent_channels": 3, "disc_channels": 4}


def test_kl_matches_torch_distributions_and_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(2, 3, 5, 5, generator=g)
    logvar = torch.randn(2, 3, 5, 5, generator=g) * 0.5
    closed = kl_standard_normal(mu, logvar)
    q, p = Normal(mu, torch.exp(0.5 * logvar)), Normal(torch.zeros_like(mu), torch.ones_like(mu))
    torch.testing.assert_close(closed, kl_divergence(q, p).mean(), rtol=1e-5, atol=1e-6)
    # Monte Carlo: E_q[log q(z) - log p(z)]
    z = q.sample((20000,))
    mc = (q.log_prob(z) - p.log_prob(z)).mean()
    assert abs(float(mc) - float(closed)) < 0.02
    assert float(kl_standard_normal(torch.zeros(4), torch.zeros(4))) == 0.0


def test_mixture_posterior_is_the_sum_of_independent_gaussians():
    mu_t, mu_s = torch.tensor([0.5, -1.0]), torch.tensor([1.0, 2.0])
    ls_t, ls_s = torch.log(torch.tensor([0.3, 1.5])), torch.log(torch.tensor([0.4, 0.5]))
    mu_m, logvar_m = mixture_posterior(mu_t, ls_t, mu_s, ls_s)
    torch.testing.assert_close(mu_m, mu_t + mu_s)
    torch.testing.assert_close(torch.exp(logvar_m), torch.exp(2 * ls_t) + torch.exp(2 * ls_s))
    g = torch.Generator().manual_seed(1)
    n = 200000
    zt = mu_t + torch.exp(ls_t) * torch.randn(n, 2, generator=g)
    zs = mu_s + torch.exp(ls_s) * torch.randn(n, 2, generator=g)
    torch.testing.assert_close((zt + zs).var(0), torch.exp(logvar_m), rtol=0.02, atol=0.0)


@pytest.mark.parametrize("size", [(32, 32), (48, 64), (40, 24)])
def test_latent_is_convolutional_and_parameters_do_not_depend_on_input_size(size):
    net = VariationalUNet(base_channels=4, depth=3, latent_channels=5, norm="batch")
    feats, mu, logsig = net.encode(torch.zeros(2, 1, *size))
    assert mu.shape == (2, 5, size[0] // 8, size[1] // 8) and logsig.shape == mu.shape
    assert len(feats) == 4
    out = net.decode(mu, feats)
    assert out.shape == (2, 1, *size)
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params == sum(p.numel() for p in VariationalUNet(4, 3, 5, "batch").parameters())
    assert n_params < 200_000  # the reference code's fully connected latent had ~185 M


def test_full_default_network_is_small():
    m = VAMA()
    assert sum(p.numel() for p in m.parameters()) < 5_000_000


def test_adapt_handles_any_in_plane_size_and_is_deterministic():
    torch.manual_seed(0)
    m = VAMA(SMALL).eval()
    for h, w in ((37, 45), (16, 16), (64, 20)):
        x = torch.rand(3, 1, h, w)
        with torch.no_grad():
            a, b = m.adapt_normalised(x), m.adapt_normalised(x)
        assert a.shape == x.shape
        assert torch.equal(a, b)


def test_residual_outputs_start_as_identity_and_target_feature_injection():
    torch.manual_seed(0)
    m = VAMA(SMALL).eval()
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():  # I* starts at zero: I_out = I + lambda * I* = I
        t = m.g_t(x)
        torch.testing.assert_close(t["out"], x)
        assert torch.equal(m.g_s(x, t)["out"], x)
    m2 = VAMA(SMALL).eval()
    with torch.no_grad():
        for net in (m2.g_t.net, m2.g_s.net):
            torch.nn.init.normal_(net.out.weight, std=0.1)
        t = m2.g_t(x)
        base = m2.g_s(x, t)["out"]
        moved = dict(t, feats=[f + 1.0 for f in t["feats"]])
        assert not torch.allclose(m2.g_s(x, moved)["out"], base)  # G_t features are injected
        shifted = dict(t, mu=t["mu"] + 1.0)
        assert not torch.allclose(m2.g_s(x, shifted)["out"], base)  # G_t posterior is mixed in


def test_stochastic_training_sampling_uses_the_mixture_variance():
    torch.manual_seed(0)
    m = VAMA(SMALL).train()
    torch.nn.init.normal_(m.g_s.net.out.weight, std=0.1)
    x = torch.rand(2, 1, 16, 16)
    t = m.g_t(x)
    r1, r2 = m.g_s(x, t)["out"], m.g_s(x, t)["out"]
    assert not torch.equal(r1, r2)  # z_m = mu_m + sigma_m * eps


def test_model_config_rejects_unknown_settings():
    from gemini_cmr.core.errors import ModelError

    with pytest.raises(ModelError):
        model_config({"hidden": 3})
    assert model_config({"depth": 2})["depth"] == 2
    assert np.isclose(model_config()["lambda_t"], 1.0)
