"""Trains the demo's base image model: a small SD1.5-family UNet on single world frames, from scratch.

The latents are the demo VAE's (model space, what the UNet sees at sampling time); the objective is AtomoVideo's:
v-prediction on SD1.5's schedule rescaled to zero terminal SNR (`atomo_core.noise_schedules`), unconditional (the
context is one zero token: SD1.5's cross-attention keys and values have no bias, so it carries nothing). The UNet
is ComfyUI's own class built from `DEMO_UNET` (`atomo_host.small_base`), so the file loads as SD1.5 in the host.

    python -m atomo_demo.train_base OUT --vae VAE_DIR [--steps 6000 --resume]

Resumable: every `--save-every` steps the full state (weights, EMA, AdamW, step, RNG) goes to
`OUT/checkpoints/latest.pt` and the EMA weights to `OUT/weights/demo_unet.safetensors`.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

DEMO_UNET = {
    "use_checkpoint": False, "image_size": 8, "out_channels": 4, "use_spatial_transformer": True, "legacy": False,
    "adm_in_channels": None, "in_channels": 4, "model_channels": 64, "num_res_blocks": [1, 1],
    "transformer_depth": [1, 1], "channel_mult": [1, 2], "transformer_depth_middle": 1,
    "use_linear_in_transformer": False, "context_dim": 64, "num_heads": 8, "transformer_depth_output": [1, 1, 1, 1],
    "use_temporal_attention": False, "use_temporal_resblock": False,
}
CONTEXT_DIM = DEMO_UNET["context_dim"]
_STATE_KEYS = ("seed", "size", "clips", "frame_stride", "batch", "lr", "warmup", "steps", "ema", "prediction")
_STATE_DEFAULTS = {"prediction": "v"}  # states written before the key existed


@dataclass
class Config:
    out: str
    vae: str = "atomo_demo/weights"   # folder with atomo_demo_vae.safetensors (atomo_demo.train_vae's weights/)
    steps: int = 6000
    batch: int = 64
    lr: float = 1e-3
    warmup: int = 200
    ema: float = 0.999
    size: int = 64
    clips: int = 1024
    eval_clips: int = 32
    frame_stride: int = 4
    seed: int = 0
    threads: int = 1
    save_every: int = 250
    log_every: int = 50
    resume: bool = False
    stop_after: int = 0
    prediction: str = "v"             # v (zero terminal SNR, AtomoVideo's) or eps (SD1.5's schedule; the comparison)


def _stage(name: str, t0: float) -> float:
    dt = time.perf_counter() - t0
    print(f"[stage] {name}: {dt:.1f} s", flush=True)
    return dt


def zero_context(batch: int) -> torch.Tensor:
    """The demo's only condition: one zero token (the base is unconditional)."""
    return torch.zeros(batch, 1, CONTEXT_DIM)


@torch.no_grad()
def encode_frames(vae_dir: Path, split: str, clips: int, size: int, frame_stride: int, batch: int = 64) -> torch.Tensor:
    """Model-space latents [N,4,h,w] of every `frame_stride`-th frame of the split's first `clips` clips."""
    from .taesd_layout import load_combined_file
    from .train_vae import frame_pool, to_tensor

    vae = load_combined_file(Path(vae_dir) / "atomo_demo_vae.safetensors")
    frames = to_tensor(frame_pool(split, clips, size, frame_stride))
    return torch.cat([vae.encoder(frames[i:i + batch]) for i in range(0, len(frames), batch)])


def init_weights(unet: torch.nn.Module) -> None:
    """ComfyUI builds layers without initialising them: PyTorch's default init, residual outputs at zero."""
    for m in unet.modules():
        torch_class = next((c for c in (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d) if isinstance(m, c)), None)
        if torch_class is not None:
            torch_class.reset_parameters(m)
        elif isinstance(m, (torch.nn.GroupNorm, torch.nn.LayerNorm)):
            torch.nn.init.ones_(m.weight)
            torch.nn.init.zeros_(m.bias)
    zero = [unet.out[-1]] + [m.out_layers[-1] for m in unet.modules() if hasattr(m, "out_layers")]
    zero += [m.proj_out for m in unet.modules() if hasattr(m, "proj_out")]
    for m in zero:
        torch.nn.init.zeros_(m.weight)
        if m.bias is not None:
            torch.nn.init.zeros_(m.bias)


def _lr(cfg: Config, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def prediction_loss(unet, x0: torch.Tensor, g: torch.Generator, alphas_cumprod: torch.Tensor,
           prediction: str = "v") -> torch.Tensor:
    """Mean squared v (or eps) error at uniformly drawn timesteps (the trainer's objective on single frames)."""
    from ..atomo_core.noise_schedules import training_target

    t = torch.randint(0, len(alphas_cumprod), (x0.shape[0],), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    ab = alphas_cumprod[t].view(-1, 1, 1, 1)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    pred = unet(x_t, t.float(), context=zero_context(x0.shape[0]))
    return F.mse_loss(pred, training_target(prediction, x0, noise, ab))


def train(cfg: Config, build_model, save_base) -> dict:
    """Runs (or resumes) training; `build_model(unet_config)` and `save_base(path, unet, config, meta)` are
    `atomo_host.small_base`'s (passed in: this package is imported host-free)."""
    threads = torch.get_num_threads()
    try:
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        return _train(cfg, build_model, save_base)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: Config, build_model, save_base) -> dict:
    from ..atomo_core.noise_schedules import PREDICTIONS, training_alphas_cumprod

    if cfg.prediction not in PREDICTIONS:
        raise ValueError(f"atomo_demo.train_base: --prediction must be one of {PREDICTIONS}, got {cfg.prediction!r}")
    out = Path(cfg.out)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    latest = out / "checkpoints" / "latest.pt"
    times = {}
    t0 = time.perf_counter()
    cache = out / "latents.pt"
    if cache.is_file():
        data = torch.load(cache, weights_only=True)
    else:
        data = {"train": encode_frames(Path(cfg.vae), "train", cfg.clips, cfg.size, cfg.frame_stride),
                "test": encode_frames(Path(cfg.vae), "test", cfg.eval_clips, cfg.size, 8)}
        torch.save(data, cache)
    latents, test = data["train"].float(), data["test"].float()
    times["data"] = _stage(f"data ({len(latents)} train latents, std {latents.std():.3f})", t0)

    torch.manual_seed(cfg.seed)
    unet = build_model(DEMO_UNET).diffusion_model
    init_weights(unet)
    ema = {k: v.detach().clone() for k, v in unet.state_dict().items()}
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(cfg.seed + 1)
    ac = training_alphas_cumprod(cfg.prediction).float()
    start, seconds, history = 0, 0.0, []
    if cfg.resume and latest.is_file():
        state = torch.load(latest, weights_only=True)
        saved = {**_STATE_DEFAULTS, **state["config"]}
        diff = {k: (saved.get(k), getattr(cfg, k)) for k in _STATE_KEYS if saved.get(k) != getattr(cfg, k)}
        if diff:
            raise ValueError(f"atomo_demo.train_base: --resume with settings that differ from {latest}: {diff} "
                             "(saved, now); use the saved values or a new output folder")
        unet.load_state_dict(state["model"])
        ema = state["ema"]
        opt.load_state_dict(state["optimizer"])
        g.set_state(state["generator"])
        start, seconds, history = state["step"], state["seconds"], state["history"]
        print(f"resumed from {latest} at step {start}", flush=True)
    elif latest.is_file() and not cfg.resume:
        raise FileExistsError(f"atomo_demo.train_base: {latest} exists; pass --resume or choose another folder")

    end = cfg.steps if not cfg.stop_after else min(cfg.steps, start + cfg.stop_after)
    t0, t_log, run = time.perf_counter(), time.perf_counter(), []
    unet.train()
    for step in range(start, end):
        for group in opt.param_groups:
            group["lr"] = _lr(cfg, step)
        idx = torch.randint(len(latents), (cfg.batch,), generator=g)
        loss = prediction_loss(unet, latents[idx], g, ac, cfg.prediction)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for k, v in unet.state_dict().items():
                ema[k].lerp_(v, 1 - cfg.ema) if v.is_floating_point() else ema[k].copy_(v)
        run.append(float(loss))
        done = step + 1
        if done % cfg.log_every == 0 or done == end:
            dt = (time.perf_counter() - t_log) / len(run)
            history.append({"step": done, "loss": float(np.mean(run))})
            print(f"step {done}/{cfg.steps} {cfg.prediction}-loss {np.mean(run):.4f} lr {_lr(cfg, step):.2e} "
                  f"{dt:.3f} s/step", flush=True)
            t_log, run = time.perf_counter(), []
        if done % cfg.save_every == 0 or done == end:
            elapsed = seconds + time.perf_counter() - t0
            tmp = latest.with_suffix(".tmp")
            torch.save({"step": done, "model": unet.state_dict(), "ema": ema, "optimizer": opt.state_dict(),
                        "generator": g.get_state(), "seconds": elapsed, "history": history,
                        "config": {k: getattr(cfg, k) for k in _STATE_KEYS}}, tmp)
            os.replace(tmp, latest)
            _save_ema(unet, ema, out, save_base, done, cfg.prediction)
    seconds += time.perf_counter() - t0
    times["train"] = _stage(f"train (steps {start}-{end}, {seconds:.1f} s in all runs)", t0)

    t0 = time.perf_counter()
    eval_loss = _eval_loss(unet, ema, test, ac, cfg.seed, cfg.prediction)
    times["eval"] = _stage("eval", t0)
    result = {"step": end, "finished": end == cfg.steps, "train_seconds_all_runs": seconds,
              "stage_seconds_this_run": times, f"test_{cfg.prediction}_loss_ema": eval_loss,
              "config": dataclasses.asdict(cfg)}
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"test-split {cfg.prediction}-loss (EMA weights) {eval_loss:.4f}", flush=True)
    return result


def _save_ema(unet, ema: dict, out: Path, save_base, step: int, prediction: str = "v") -> None:
    live = {k: v.detach().clone() for k, v in unet.state_dict().items()}
    unet.load_state_dict(ema)
    try:
        save_base(out / "weights" / "demo_unet.safetensors", unet, DEMO_UNET,
                  {"source": "atomo_demo.train_base (trained from scratch on atomo_demo.world)", "step": step,
                   "prediction": prediction, "zero_terminal_snr": str(prediction == "v").lower()})
    finally:
        unet.load_state_dict(live)


@torch.no_grad()
def _eval_loss(unet, ema: dict, test: torch.Tensor, ac: torch.Tensor, seed: int, prediction: str = "v") -> float:
    live = {k: v.detach().clone() for k, v in unet.state_dict().items()}
    unet.load_state_dict(ema)
    unet.eval()
    g = torch.Generator().manual_seed(seed + 7)
    losses = [float(prediction_loss(unet, test[i:i + 64], g, ac, prediction))
              for i in range(0, len(test), 64) for _ in range(4)]
    unet.load_state_dict(live)
    unet.train()
    return float(np.mean(losses))


def main(argv=None) -> int:
    """Boots ComfyUI (the UNet is the host's class) and runs the pack's own copy of this module."""
    from atomo_demo.train_vae import config_parser

    p = config_parser(Config, "python -m atomo_demo.train_base", __doc__,
                      "output folder: checkpoints/, weights/demo_unet.safetensors, metrics.json")
    cfg = Config(**vars(p.parse_args(argv)))
    from atomo_train.host_boot import boot

    pack = boot(force_cpu=True)
    small_base = importlib.import_module(f"{pack.__name__}.atomo_host.small_base")
    mine = importlib.import_module(f"{pack.__name__}.atomo_demo.train_base")
    mine.train(cfg, small_base.build_model, small_base.save_small_base)
    return 0


if __name__ == "__main__":
    sys.exit(main())
