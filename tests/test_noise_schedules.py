"""Schedule maths against diffusers' DDIMScheduler (zero-SNR rescale, trailing spacing, v-prediction)."""
import pytest
import torch

from pack import core

ns = core("noise_schedules")

diffusers = pytest.importorskip("diffusers", reason="diffusers is a test-only reference (requirements-test.txt)")


def reference(steps=None):
    sch = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                  beta_schedule="scaled_linear", rescale_betas_zero_snr=True,
                                  timestep_spacing="trailing", prediction_type="v_prediction",
                                  clip_sample=False, set_alpha_to_one=True, steps_offset=0)
    if steps:
        sch.set_timesteps(steps)
    return sch


def test_sd15_betas_match_scaled_linear():
    ref = diffusers.DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    assert torch.allclose(ns.sd15_betas().float(), ref.betas, atol=1e-9)


def test_alphas_cumprod_match_reference_and_end_at_zero():
    ac = ns.zero_snr_alphas_cumprod()
    ref = reference().alphas_cumprod.double()
    assert (ac - ref).abs().max().item() < 1e-6
    assert ac[-1].item() == 0.0 and ref[-1].item() == 0.0
    # The first step keeps SD1.5's value (Lin et al. keep alpha_bar_0).
    assert abs(ac[0].item() - (1 - 0.00085)) < 1e-9
    # SNR decreases monotonically to exactly zero.
    assert torch.all(ac[1:] < ac[:-1])


def test_zero_snr_differs_from_sd15_at_the_end():
    plain = ns.alphas_cumprod_from_betas(ns.sd15_betas())
    assert plain[-1].item() > 4e-3  # SD1.5 leaves ~0.068 of the signal: the flaw being fixed
    assert ns.zero_snr_alphas_cumprod()[-1].item() == 0.0


@pytest.mark.parametrize("steps", [1, 2, 3, 7, 20, 25, 30, 50, 64, 200, 999, 1000])
def test_trailing_timesteps_equal_reference(steps):
    ours = ns.trailing_timesteps(steps)
    ref = reference(steps).timesteps
    assert ours.tolist() == ref.tolist()
    assert ours[0].item() == 999  # trailing always starts at the zero-SNR step


def test_trailing_rejects_bad_counts():
    with pytest.raises(ValueError):
        ns.trailing_timesteps(0)


@pytest.mark.parametrize("steps,index", [(25, 0), (25, 10), (25, 24), (4, 0), (50, 3)])
def test_one_ddim_step_matches_reference(steps, index):
    sch = reference(steps)
    t = int(sch.timesteps[index])
    g = torch.Generator().manual_seed(index + steps)
    sample = torch.randn(2, 4, 8, 8, generator=g)
    v = torch.randn(2, 4, 8, 8, generator=g)
    ref = sch.step(v, t, sample, eta=0.0).prev_sample
    ac = ns.zero_snr_alphas_cumprod()
    prev_t = t - 1000 // steps  # diffusers DDIM's own stride
    ab_prev = ac[prev_t] if prev_t >= 0 else torch.tensor(1.0, dtype=torch.float64)
    ours = ns.ddim_step(sample.double(), v.double(), ac[t], ab_prev).float()
    assert (ours - ref).abs().max().item() < 1e-5


def test_conversions_roundtrip_and_zero_snr_limit():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 4, 4, 4, generator=g).double(), torch.randn(3, 4, 4, 4, generator=g).double()
    for ab in (0.999, 0.5, 1e-4):
        a, b = ab ** 0.5, (1 - ab) ** 0.5
        x_t = a * x0 + b * eps
        v = ns.v_from_x0_eps(x0, eps, ab)
        assert torch.allclose(ns.x0_from_v(x_t, v, ab), x0, atol=1e-10)
        assert torch.allclose(ns.eps_from_v(x_t, v, ab), eps, atol=1e-10)
        assert torch.allclose(ns.v_from_x0(x_t, x0, ab), v, atol=1e-8)
    # At alpha_bar = 0 the input is pure noise and v = -x0: still well defined.
    v = ns.v_from_x0_eps(x0, eps, 0.0)
    assert torch.allclose(v, -x0)
    assert torch.allclose(ns.x0_from_v(eps, v, 0.0), x0)
    # Per-batch alpha_bar broadcasts over the other dims.
    abs_ = torch.tensor([0.9, 0.5, 0.1], dtype=torch.float64)
    x_t = abs_.sqrt().view(-1, 1, 1, 1) * x0 + (1 - abs_).sqrt().view(-1, 1, 1, 1) * eps
    assert torch.allclose(ns.x0_from_v(x_t, ns.v_from_x0_eps(x0, eps, abs_), abs_), x0)


def test_sigmas_and_comfy_terminal_clamp():
    ac = ns.zero_snr_alphas_cumprod()
    assert torch.isinf(ns.sigmas_from_alphas_cumprod(ac)[-1])
    clamped = ns.sigmas_from_alphas_cumprod(ac, ns.COMFY_ZSNR_ALPHA_BAR_T)
    assert abs(clamped[-1].item() - 4518.76) < 0.1
    assert torch.isfinite(clamped).all()


def test_cfg_rescale_matches_lin_et_al():
    g = torch.Generator().manual_seed(1)
    cond, uncond = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g) * 0.5
    cfg, phi = 7.5, 0.7
    x_cfg = uncond + cfg * (cond - uncond)
    expect = phi * x_cfg * cond.std(dim=(1, 2, 3), keepdim=True) / x_cfg.std(dim=(1, 2, 3), keepdim=True) \
        + (1 - phi) * x_cfg
    out = ns.cfg_rescale(cond, uncond, cfg, phi)
    assert torch.allclose(out, expect, atol=1e-6)
    # phi = 1: every frame's std equals the conditional prediction's.
    full = ns.cfg_rescale(cond, uncond, cfg, 1.0)
    assert torch.allclose(full.std(dim=(1, 2, 3)), cond.std(dim=(1, 2, 3)), atol=1e-5)
    assert torch.equal(ns.cfg_rescale(cond, uncond, cfg, 0.0), x_cfg)
    # cfg = 1 leaves the conditional prediction unchanged at any phi.
    assert torch.allclose(ns.cfg_rescale(cond, uncond, 1.0, 0.7), cond, atol=1e-6)
    # A constant prediction stays finite.
    z = torch.zeros(1, 4, 2, 2)
    assert torch.isfinite(ns.cfg_rescale(z, z, 5.0, 0.7)).all()


def test_gaussian_ideal_v_is_the_posterior_mean():
    """Monte-Carlo check of the closed form the host exact-denoiser test relies on."""
    g = torch.Generator().manual_seed(2)
    mu, s, n = 0.3, 0.6, 400_000
    x0 = mu + s * torch.randn(n, generator=g, dtype=torch.float64)
    eps = torch.randn(n, generator=g, dtype=torch.float64)
    for ab in (0.9, 0.3, 0.01, 0.0):
        a, b = ab ** 0.5, (1 - ab) ** 0.5
        x_t = a * x0 + b * eps
        v = a * eps - b * x0
        pred = ns.gaussian_ideal_v(x_t, ab, mu, s)
        # Least-squares optimality: the residual is uncorrelated with x_t and has zero mean.
        r = v - pred
        assert abs(r.mean().item()) < 5e-3
        assert abs((r * (x_t - x_t.mean())).mean().item()) < 5e-3
    assert torch.allclose(ns.gaussian_ideal_v(torch.randn(5, dtype=torch.float64), 0.0, mu, s),
                          torch.full((5,), -mu, dtype=torch.float64))


def test_training_schedules_and_targets_of_both_prediction_types():
    ns = core("noise_schedules")
    v_ab, eps_ab = ns.training_alphas_cumprod("v"), ns.training_alphas_cumprod("eps")
    # v: pure noise at the last step; eps: SD1.5's own schedule, whose last step keeps sqrt(0.00466) of the image
    assert v_ab[-1] == 0.0 and float(eps_ab[-1]) == pytest.approx(0.0046601, rel=1e-4)
    assert float(eps_ab[0]) == pytest.approx(1 - 0.00085) and torch.equal(v_ab, ns.zero_snr_alphas_cumprod())
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 4, 3, 3, generator=g), torch.randn(2, 4, 3, 3, generator=g)
    ab = torch.tensor([0.25, 0.64]).view(-1, 1, 1, 1)
    assert torch.equal(ns.training_target("eps", x0, eps, ab), eps)
    assert torch.allclose(ns.training_target("v", x0, eps, ab), ab.sqrt() * eps - (1 - ab).sqrt() * x0)
    with pytest.raises(ValueError, match="prediction must be one of"):
        ns.training_target("x0", x0, eps, ab)
