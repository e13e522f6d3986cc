"""Schedule maths for zero-terminal-SNR v-prediction (Lin et al. 2023, "Common Diffusion Noise Schedules and
Sample Steps are Flawed"), host-free so it can be checked against diffusers without ComfyUI.

Notation: alpha_bar_t (``alphas_cumprod``), a_t = sqrt(alpha_bar_t), b_t = sqrt(1 - alpha_bar_t);
x_t = a_t x0 + b_t eps and v = a_t eps - b_t x0. ComfyUI's k-diffusion view of the same process is
x = x0 + sigma eps with sigma = b_t / a_t and x_t = x / sqrt(1 + sigma^2).

The exact terminal step. After rescaling, alpha_bar_T = 0, so sigma_T is infinite. ComfyUI's
``ModelSamplingDiscrete(zsnr=True)`` clamps alpha_bar_T to 4.8973e-08 (sigma_max about 4518.76). At that level the
network input x / sqrt(1 + sigma^2) is the initial noise itself (ComfyUI scales the first noise by
sqrt(1 + sigma^2)), the timestep is T, and the x0 ComfyUI derives from v is a_T x_t - b_T v with a_T = 2.2e-4
instead of 0 and b_T = 1 - 2.4e-8 instead of 1: the only departure from the exact zero-SNR step is a 2.2e-4
fraction of the noise left in the first x0 estimate, far below what any sampler resolves. The pack therefore uses
ComfyUI's clamped model sampling (so every ComfyUI sampler works with finite sigmas) and keeps the exact
alpha_bar_T = 0 here, where the reference maths needs it.
"""
from __future__ import annotations

import numpy as np
import torch

NUM_TRAIN_TIMESTEPS = 1000
SD15_BETA_START = 0.00085
SD15_BETA_END = 0.012
DEFAULT_CFG_RESCALE = 0.7
COMFY_ZSNR_ALPHA_BAR_T = 4.8973451890853435e-08  # ComfyUI's clamp of alpha_bar_T (comfy/model_sampling.py)


def sd15_betas(num_train_timesteps: int = NUM_TRAIN_TIMESTEPS, beta_start: float = SD15_BETA_START,
               beta_end: float = SD15_BETA_END) -> torch.Tensor:
    """SD1.5's "scaled linear" betas (linear in sqrt(beta)), float64."""
    return torch.linspace(beta_start ** 0.5, beta_end ** 0.5, num_train_timesteps, dtype=torch.float64) ** 2


def alphas_cumprod_from_betas(betas: torch.Tensor) -> torch.Tensor:
    return torch.cumprod(1.0 - betas.double(), dim=0)


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Lin et al. Algorithm 1: shift and scale sqrt(alpha_bar) so the last step is pure noise, keep the first."""
    alphas_bar_sqrt = alphas_cumprod_from_betas(betas).sqrt()
    first, last = alphas_bar_sqrt[0].clone(), alphas_bar_sqrt[-1].clone()
    alphas_bar_sqrt = (alphas_bar_sqrt - last) * (first / (first - last))
    alphas_bar = alphas_bar_sqrt ** 2
    alphas = torch.cat([alphas_bar[:1], alphas_bar[1:] / alphas_bar[:-1]])
    return 1.0 - alphas


def zero_snr_alphas_cumprod(num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> torch.Tensor:
    """AtomoVideo's training schedule: SD1.5 betas rescaled to zero terminal SNR; the last entry is exactly 0."""
    ac = alphas_cumprod_from_betas(rescale_zero_terminal_snr(sd15_betas(num_train_timesteps)))
    ac[-1] = 0.0  # exact by construction; remove float round-off
    return ac


PREDICTIONS = ("v", "eps")


def training_alphas_cumprod(prediction: str) -> torch.Tensor:
    """The schedule a model of this prediction type trains on: AtomoVideo's v-prediction on SD1.5's schedule
    rescaled to zero terminal SNR, or (eps, the paper's comparison) SD1.5's own schedule, as SD1.5 was trained."""
    if prediction == "v":
        return zero_snr_alphas_cumprod()
    if prediction == "eps":
        return alphas_cumprod_from_betas(sd15_betas())
    raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")


def training_target(prediction: str, x0: torch.Tensor, eps: torch.Tensor, alpha_bar) -> torch.Tensor:
    """What the UNet output is regressed on: v = sqrt(ab) eps - sqrt(1 - ab) x0, or the noise itself."""
    if prediction == "v":
        return v_from_x0_eps(x0, eps, alpha_bar)
    if prediction == "eps":
        return eps
    raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")


def sigmas_from_alphas_cumprod(alphas_cumprod: torch.Tensor, terminal_alpha_bar: float | None = None) -> torch.Tensor:
    """k-diffusion sigmas sqrt((1 - ab) / ab). Infinite where ab = 0 unless `terminal_alpha_bar` replaces that 0
    (ComfyUI uses COMFY_ZSNR_ALPHA_BAR_T)."""
    ac = alphas_cumprod.double().clone()
    if terminal_alpha_bar is not None:
        ac[ac <= 0] = terminal_alpha_bar
    return ((1.0 - ac) / ac).sqrt()


def trailing_timesteps(steps: int, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> torch.Tensor:
    """Lin et al. section 3.3 / diffusers "trailing": start at t = T-1 (the zero-SNR step) and stride down.

    Computed with numpy exactly as diffusers does (round half to even), so step counts that do not divide
    num_train_timesteps give the same timesteps too. ComfyUI's "simple" scheduler floors instead of rounding and
    differs by one timestep for some of those counts.
    """
    if steps < 1 or steps > num_train_timesteps:
        raise ValueError(f"steps must be in 1..{num_train_timesteps}, got {steps}")
    t = np.round(np.arange(num_train_timesteps, 0, -num_train_timesteps / steps)).astype(np.int64) - 1
    return torch.from_numpy(t.copy())


def _ab(alpha_bar, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ab = torch.as_tensor(alpha_bar, dtype=like.dtype, device=like.device)
    if ab.ndim == 1 and like.ndim > 1:  # one alpha_bar per batch entry
        ab = ab.view(-1, *([1] * (like.ndim - 1)))
    return ab.sqrt(), (1.0 - ab).sqrt()


def v_from_x0_eps(x0: torch.Tensor, eps: torch.Tensor, alpha_bar) -> torch.Tensor:
    a, b = _ab(alpha_bar, x0)
    return a * eps - b * x0


def x0_from_v(x_t: torch.Tensor, v: torch.Tensor, alpha_bar) -> torch.Tensor:
    """Well defined at alpha_bar = 0 (x0 = -v), unlike the eps parameterisation."""
    a, b = _ab(alpha_bar, x_t)
    return a * x_t - b * v


def eps_from_v(x_t: torch.Tensor, v: torch.Tensor, alpha_bar) -> torch.Tensor:
    a, b = _ab(alpha_bar, x_t)
    return b * x_t + a * v


def v_from_x0(x_t: torch.Tensor, x0: torch.Tensor, alpha_bar) -> torch.Tensor:
    """Inverse of x0_from_v; needs alpha_bar < 1 (b > 0), true for every training step."""
    a, b = _ab(alpha_bar, x_t)
    return (a * x_t - x0) / b


def ddim_step(x_t: torch.Tensor, v: torch.Tensor, alpha_bar_t, alpha_bar_prev) -> torch.Tensor:
    """Deterministic DDIM (eta = 0) update from a v prediction."""
    x0 = x0_from_v(x_t, v, alpha_bar_t)
    eps = eps_from_v(x_t, v, alpha_bar_t)
    a_prev, b_prev = _ab(alpha_bar_prev, x_t)
    return a_prev * x0 + b_prev * eps


def cfg_rescale(cond: torch.Tensor, uncond: torch.Tensor, cfg: float, phi: float = DEFAULT_CFG_RESCALE) -> torch.Tensor:
    """Lin et al. section 3.4 on v (or eps) predictions: guidance, then pull each sample's std back to the
    conditional prediction's, blended by phi."""
    return rescale_guided(uncond + cfg * (cond - uncond), cond, phi)


def rescale_guided(x_cfg: torch.Tensor, cond: torch.Tensor, phi: float = DEFAULT_CFG_RESCALE) -> torch.Tensor:
    """The rescale half of `cfg_rescale`, for a guided prediction computed elsewhere (the host's CFG).

    Statistics are per batch entry: frames travel as the batch, so each frame is rescaled on its own, as in
    ComfyUI's RescaleCFG and the image models Lin et al. describe.
    """
    if phi == 0.0:
        return x_cfg
    dims = tuple(range(1, cond.ndim))
    std_cond = cond.std(dim=dims, keepdim=True)
    std_cfg = x_cfg.std(dim=dims, keepdim=True)
    # A constant prediction (std 0) has nothing to rescale; leave it unchanged instead of dividing by zero.
    ratio = torch.where(std_cfg > 0, std_cond / std_cfg.clamp_min(torch.finfo(std_cfg.dtype).tiny),
                        torch.ones_like(std_cfg))
    return phi * (x_cfg * ratio) + (1.0 - phi) * x_cfg


def gaussian_ideal_v(x_t: torch.Tensor, alpha_bar, mu: float, s: float) -> torch.Tensor:
    """The exact v-prediction E[v | x_t] for data x0 ~ N(mu, s^2) per element (used to test samplers).

    E[x0 | x_t] = mu + a s^2 / (a^2 s^2 + b^2) (x_t - a mu) and v = (a x_t - x0) / b; at alpha_bar = 0 this is -mu.
    """
    a, b = _ab(alpha_bar, x_t)
    x0 = mu + a * s * s / (a * a * s * s + b * b) * (x_t - a * mu)
    return (a * x_t - x0) / b
