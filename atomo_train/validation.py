"""Seeing it train: (a) eval loss at fixed timestep quantiles on held-out clips, (b) image-to-video samples made
with the nodes' own glue (the loader's `inflate` + zero-SNR v-prediction, the image conditioning of
AtomoVideoImageConditioning, AtomoVideoSampler's `sample_run`), saved as animated WebP plus a contact sheet,
scored with the pack's metrics.

With `model_setup`, the only trainer module that uses the pack's host glue (here: sampling).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import comfy.model_management

from ..atomo_core import noise_schedules as ns
from ..atomo_core.errors import AtomoVideoError
from ..atomo_core.metrics.plots import contact_sheet
from ..atomo_core.metrics.report import evaluate
from ..atomo_host.conditioning import ImageConditioning, condition_video
from ..atomo_host.decoupled_attention import Injection, inject
from ..atomo_host.image_tokens import FROM_ATOMOVIDEO
from ..atomo_host.inflation import inflate
from ..atomo_host.sampling import SamplingSettings, sample_run
from ..atomo_host.zero_snr import apply_zero_snr_vprediction
from .loop import collate, make_sample, sample_loss

EVAL_SEED_OFFSET = 10_000_000


@torch.no_grad()
def eval_losses(cfg, tm, module, dataset, device) -> dict:
    """Mean v (or eps) loss per timestep quantile (first frame given, no dropout, fixed noise per clip and
    quantile)."""
    module.eval()
    alphas_cumprod = ns.training_alphas_cumprod(tm.metadata.prediction)
    last = len(alphas_cumprod) - 1
    clips = min(cfg.validation.clips, len(dataset))
    out = {}
    for q in cfg.validation.quantiles:
        t = int(round(q * last))
        samples = [make_sample(dataset[i], EVAL_SEED_OFFSET + i, frames=cfg.data.frames, seed=cfg.validation.seed,
                               draws_cfg=cfg.conditioning, metadata=tm.metadata, null_text=dataset[i]["text"],
                               alphas_cumprod=alphas_cumprod, timestep=t, first_frame_only=True,
                               image_features=tm.uses_image)
                   for i in range(clips)]
        b = collate(samples, device)
        pred = module(b.x_t, b.t, b.context, b.concat, b.image)
        out[f"q{q:.2f}_t{t}"] = float(sample_loss(pred, b, cfg.data.frames))
    module.train()
    out["mean"] = float(np.mean(list(out.values())))
    return out


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    return (frames.clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)


def save_webp(path: Path, frames: np.ndarray, fps: int = 8) -> None:
    imgs = [Image.fromarray(f) for f in frames]
    imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=int(1000 / fps), loop=0, lossless=True)


def sample_video(tm, weights, vae, item: dict, null_text: torch.Tensor, frames: int, vcfg,
                 clip_vision=None) -> tuple[np.ndarray, np.ndarray]:
    """One image-to-video sample, exactly as the nodes make it: (video [F,H,W,3] uint8, input image). With an
    image projection in `weights` and a `clip_vision` model, the image is also injected as AtomoVideo CLIP Vision
    Injection does it ("from AtomoVideo weights", weight 1)."""
    model = inflate(tm.base.patcher, weights, "validation")
    if weights.metadata.prediction == "v":  # an eps model samples as the loader gives it: the base's own schedule
        model = apply_zero_snr_vprediction(model, cfg_rescale=vcfg.cfg_rescale)
    latent_format = tm.base.patcher.get_model_object("latent_format")
    first = latent_format.process_out(item["latents"][:1].float())
    image = vae.decode(first).float().clamp(0, 1)                    # [1,H,W,3]
    if weights.image_proj and clip_vision is not None:
        model = inject(model, clip_vision, image, Injection(FROM_ATOMOVIDEO))
    h, w = image.shape[1:3]
    positive = [[item["text"].float().unsqueeze(0), {}]]
    negative = [[null_text.float().unsqueeze(0), {}]]
    pos, neg, latent = condition_video((positive, negative), vae, image,
                                       ImageConditioning(frames=frames, width=w, height=h))
    samples = sample_run(model, pos, neg, latent, SamplingSettings(seed=vcfg.seed, steps=vcfg.steps, cfg=vcfg.cfg,
                                                                   cfg_rescale=vcfg.cfg_rescale))
    video = vae.decode(samples).float()
    return to_uint8(video), to_uint8(image[0])


def release_sampling_models() -> None:
    """Unpatch what sampling loaded (the loader's weight patch on conv_in stays applied until then)."""
    comfy.model_management.unload_all_models()


class Validator:
    """Called by the loop every `validation.every` steps on every process; works on the main process."""

    def __init__(self, cfg, tm, vae, val_dataset, null_text: torch.Tensor, clip_vision=None):
        self.cfg, self.tm, self.vae, self.data, self.null_text = cfg, tm, vae, val_dataset, null_text
        self.clip_vision = clip_vision  # for the image injection of models with an image projection
        self.dir = cfg.output.dir / "validation"

    def __call__(self, step: int, module, accelerator) -> dict | None:
        result = None
        if accelerator.is_main_process:
            self.dir.mkdir(parents=True, exist_ok=True)
            unwrapped = accelerator.unwrap_model(module)
            losses = eval_losses(self.cfg, self.tm, unwrapped, self.data, accelerator.device)
            logs = {f"val/loss_{k}": v for k, v in losses.items()}
            metrics = self.samples(step, unwrapped) if self.cfg.validation.samples else []
            for i, m in enumerate(metrics):
                for key in ("first_frame_psnr", "first_frame_ssim", "flow_magnitude_mean", "adjacent_ssim_mean"):
                    if m.get(key) is not None:
                        logs[f"val/sample{i}_{key}"] = m[key]
            if accelerator.log_with:
                accelerator.log(logs, step=step)
            result = {"losses": losses, "metrics": metrics}
            (self.dir / f"step{step:08d}.json").write_text(json.dumps(result, indent=2, default=float))
        accelerator.wait_for_everyone()
        return result

    @torch.no_grad()
    def samples(self, step: int, module) -> list[dict]:
        weights = self.tm.export({k: v.detach() for k, v in module.state_dict().items()})
        self.tm.detach()  # sample through the nodes on the base UNet, then re-apply the training patches
        try:
            videos, metrics = [], []
            for i in range(min(self.cfg.validation.samples, len(self.data))):
                try:
                    video, image = sample_video(self.tm, weights, self.vae, self.data[i], self.null_text,
                                                self.cfg.data.frames, self.cfg.validation, self.clip_vision)
                except AtomoVideoError as e:  # e.g. NaN while sampling: report it, never stall the other ranks
                    print(f"validation sample {i} at step {step}: {e}", file=sys.stderr, flush=True)
                    metrics.append({"error": str(e)})
                    continue
                save_webp(self.dir / f"step{step:08d}_sample{i}.webp", video)
                videos.append(video)
                metrics.append(evaluate(video.astype(np.float32) / 255, image.astype(np.float32) / 255)["summary"])
            if videos:
                Image.fromarray(contact_sheet(videos)).save(self.dir / f"step{step:08d}_sheet.png")
        finally:
            release_sampling_models()
            self.tm.attach(next(module.parameters()).device)
        return metrics
