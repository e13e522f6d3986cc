"""Live-preview colours of the demo VAE's latents: `python -m atomo_demo preview-colors`.

ComfyUI's latent previews (`--preview-method auto`, Latent2RGB) map each latent pixel of the sampler's current
estimate to RGB with a 4x3 matrix and a bias from the model's latent format. SD1.5's matrix fits SD1.5's VAE; the
demo VAE learnt its latent space from nothing, so with SD1.5's matrix the demo's previews are false colours. This
fits the matrix by least squares on world frames (train split), in the sampler's space (latent x scale factor), to
the frames shrunk to the latent's size; the result is `DEMO_LATENT_RGB` in `atomo_host/demo_model.py`.
"""
from __future__ import annotations

import sys

import numpy as np
import torch

import comfy.latent_formats

from ..atomo_host import demo_model
from . import world

FIT_CLIPS, EVAL_CLIPS, EVERY = 64, 16, 4  # train clips fitted, test clips scored, every EVERY-th frame


def frames(split: str, count: int) -> torch.Tensor:
    """[N, 64, 64, 3] float 0..1 world frames (every EVERY-th of each clip), as ComfyUI IMAGEs."""
    clips = [world.make_clip(seed)[0][::EVERY] for seed in world.split_seeds(split, count)]
    return torch.from_numpy(np.concatenate(clips)).float() / 255.0


def pairs(vae, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(latent pixels in the sampler's space [P, 4], target RGB in -1..1 [P, 3]) of IMAGEs through `vae`."""
    with torch.no_grad():
        latent = demo_model.DemoLatentFormat().process_in(vae.encode(images))  # [N, 4, h, w]
    side = latent.shape[-1]
    target = torch.nn.functional.adaptive_avg_pool2d(images.movedim(-1, 1), side) * 2.0 - 1.0
    return latent.movedim(1, -1).reshape(-1, 4).double(), target.movedim(1, -1).reshape(-1, 3).double()


def fit(latents: torch.Tensor, targets: torch.Tensor) -> tuple[list[list[float]], list[float]]:
    """Least-squares (factors [4][3] as ComfyUI lists them, bias [3])."""
    design = torch.cat([latents, torch.ones(len(latents), 1, dtype=latents.dtype)], dim=1)
    solution = torch.linalg.lstsq(design, targets).solution  # [5, 3]
    return solution[:4].tolist(), solution[4].tolist()


def preview_rmse(factors, bias, latents: torch.Tensor, targets: torch.Tensor) -> float:
    """RMS error (on -1..1) of the preview Latent2RGB would draw, clamped to the image range as it is."""
    rgb = latents @ torch.tensor(factors, dtype=latents.dtype)
    if bias is not None:
        rgb = rgb + torch.tensor(bias, dtype=latents.dtype)
    return float((rgb.clamp(-1, 1) - targets).pow(2).mean().sqrt())


def main(argv=None) -> int:
    vae = demo_model.load_vae()
    factors, bias = fit(*pairs(vae, frames("train", FIT_CLIPS)))
    test = pairs(vae, frames("test", EVAL_CLIPS))
    sd15 = comfy.latent_formats.SD15().latent_rgb_factors
    print(f"preview RMS error on {EVAL_CLIPS} test clips: fitted {preview_rmse(factors, bias, *test):.4f}, "
          f"SD1.5's factors {preview_rmse(sd15, None, *test):.4f}, "
          f"shipped {preview_rmse(demo_model.DEMO_LATENT_RGB, demo_model.DEMO_LATENT_RGB_BIAS, *test):.4f}")
    print("DEMO_LATENT_RGB = [")
    for row in factors:
        print("    [" + ", ".join(f"{v:8.4f}" for v in row) + "],")
    print("]")
    print("DEMO_LATENT_RGB_BIAS = [" + ", ".join(f"{v:.4f}" for v in bias) + "]")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
