"""Trains the demo VAE (TAESD layout, so ComfyUI's VAELoader loads it) from scratch on world frames.

Resumable: every `--save-every` steps the full state (weights, Adam, step, sampler RNG) goes to
`OUT/checkpoints/latest.pt` and the loadable files to `OUT/weights/`; `--resume` continues from there and gives
the same weights as an uninterrupted run. Deterministic from `--seed` (on one machine and thread count).

    python -m atomo_demo.train_vae OUT [--steps 1500 --batch 8 --crop 32 --resume]

Prints how long each stage took and the reconstruction PSNR on test-split frames at the end.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import world
from .taesd_layout import TinyAutoencoder, save_taesd_files

# Settings a resumed run must share with its checkpoint (steps too: it shapes the learning-rate schedule).
_STATE_KEYS = ("seed", "size", "crop", "batch", "clips", "frame_stride", "lr", "warmup", "steps", "l1", "latent_reg",
               "latent_noise")


@dataclass
class Config:
    out: str
    steps: int = 1500
    batch: int = 8
    crop: int = 32
    size: int = 64
    clips: int = 512
    frame_stride: int = 4
    lr: float = 5e-4
    warmup: int = 50
    l1: float = 0.5  # weight of an L1 term beside the MSE: leaves the mean-colour plateau sooner
    latent_reg: float = 0.01
    latent_noise: float = 0.0
    seed: int = 0
    save_every: int = 100
    log_every: int = 10
    eval_clips: int = 32
    eval_frames: int = 4
    threads: int = 0
    resume: bool = False
    stop_after: int = 0  # stop after this many steps in this run (0: run to --steps); for chunked runs

    def validate(self):
        def bad(key, why):
            raise ValueError(f"atomo_demo.train_vae: --{key.replace('_', '-')} {why}")

        for key in ("steps", "batch", "clips", "frame_stride", "save_every", "log_every", "eval_clips", "eval_frames"):
            if getattr(self, key) < 1:
                bad(key, f"must be >= 1, got {getattr(self, key)}")
        if self.size % 8 or self.size < 32:
            bad("size", f"must be a multiple of 8 and >= 32, got {self.size}")
        if self.crop % 8 or not 8 <= self.crop <= self.size:
            bad("crop", f"must be a multiple of 8 between 8 and --size ({self.size}), got {self.crop}")
        if not self.lr > 0:
            bad("lr", f"must be > 0, got {self.lr}")
        for key in ("warmup", "l1", "latent_reg", "latent_noise"):
            if getattr(self, key) < 0:
                bad(key, f"must be >= 0, got {getattr(self, key)}")


def _stage(name: str, t0: float) -> float:
    dt = time.perf_counter() - t0
    print(f"[stage] {name}: {dt:.1f} s", flush=True)
    return dt


def frame_pool(split: str, clips: int, size: int, frame_stride: int, frames: int = 32) -> np.ndarray:
    """uint8 [N,H,W,3]: every `frame_stride`-th frame of the split's first `clips` clips."""
    out = []
    for seed in world.split_seeds(split, clips):
        clip, _ = world.make_clip(seed, frames=frames, size=size)
        out.append(clip[::frame_stride])
    return np.concatenate(out)


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 [N,H,W,3] -> float [N,3,H,W] in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div(255.0)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of [0,1] images after 8-bit quantisation of `a` (what a saved frame would hold)."""
    a = (a.clamp(0, 1) * 255).round() / 255
    mse = ((a - b) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(1.0 / mse)


@torch.no_grad()
def evaluate(model: TinyAutoencoder, frames: torch.Tensor, batch: int = 16) -> dict:
    model.eval()
    vals, zs = [], []
    for i in range(0, len(frames), batch):
        x = frames[i:i + batch]
        z, rec = model(x)
        vals.append(psnr(rec, x))
        zs.append(z)
    model.train()
    p, z = torch.cat(vals), torch.cat(zs)
    return {"psnr_mean": float(p.mean()), "psnr_min": float(p.min()), "frames": len(p),
            "latent_mean": float(z.mean()), "latent_std": float(z.std())}


def _lr(cfg: Config, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def _batch(pool: torch.Tensor, cfg: Config, g: torch.Generator) -> torch.Tensor:
    idx = torch.randint(len(pool), (cfg.batch,), generator=g)
    off = torch.randint(0, cfg.size - cfg.crop + 1, (2, cfg.batch), generator=g)
    flip = torch.rand(cfg.batch, generator=g) < 0.5
    crops = []
    for i in range(cfg.batch):
        y, x = int(off[0, i]), int(off[1, i])
        c = pool[idx[i], :, y:y + cfg.crop, x:x + cfg.crop]
        crops.append(c.flip(-1) if flip[i] else c)
    return torch.stack(crops)


def _save_state(path: Path, state: dict):
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a stop during the write leaves the previous checkpoint intact


def train(cfg: Config) -> dict:
    """Runs (or resumes) training; returns the final metrics (also written to OUT/metrics.json).

    `threads` applies for the run only: the caller's thread count comes back, since a changed count changes
    float rounding of everything else in the process (e.g. a bit-identity check against a fresh process)."""
    threads = torch.get_num_threads()
    try:
        return _train(cfg)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: Config) -> dict:
    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    ckpt_dir = out / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    latest = ckpt_dir / "latest.pt"
    times = {}

    t0 = time.perf_counter()
    pool = to_tensor(frame_pool("train", cfg.clips, cfg.size, cfg.frame_stride))
    test = to_tensor(frame_pool("test", cfg.eval_clips, cfg.size, 32 // cfg.eval_frames))
    times["data"] = _stage(f"data ({len(pool)} train frames, {len(test)} test frames)", t0)

    torch.manual_seed(cfg.seed)
    model = TinyAutoencoder().init_for_training()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    g = torch.Generator().manual_seed(cfg.seed + 1)
    start, train_seconds, history = 0, 0.0, []
    if cfg.resume and latest.is_file():
        state = torch.load(latest, weights_only=True)
        saved = state["config"]
        diff = {k: (saved.get(k), getattr(cfg, k)) for k in _STATE_KEYS if saved.get(k) != getattr(cfg, k)}
        if diff:
            raise ValueError(f"atomo_demo.train_vae: --resume with settings that differ from the checkpoint in "
                             f"{latest}: {diff} (saved, now); use the saved values or a new output folder")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        g.set_state(state["generator"])
        start, train_seconds, history = state["step"], state["train_seconds"], state["history"]
        print(f"resumed from {latest} at step {start}", flush=True)
    elif cfg.resume:
        print(f"--resume: no checkpoint in {ckpt_dir}, starting from step 0", flush=True)
    elif latest.is_file():
        raise FileExistsError(f"atomo_demo.train_vae: {latest} exists; pass --resume to continue it or choose "
                              f"another output folder")

    end = cfg.steps if not cfg.stop_after else min(cfg.steps, start + cfg.stop_after)
    model.train()
    t0 = time.perf_counter()
    t_log, run_loss = time.perf_counter(), []
    for step in range(start, end):
        for group in opt.param_groups:
            group["lr"] = _lr(cfg, step)
        x = _batch(pool, cfg, g)
        z = model.encoder(x)
        zin = z + cfg.latent_noise * torch.randn(z.shape, generator=g) if cfg.latent_noise else z
        rec = model.decoder(zin)
        mse = F.mse_loss(rec, x)
        # Keep the latent near zero mean, unit variance per channel: the scale a diffusion model expects.
        reg = (z.mean((0, 2, 3)) ** 2 + (z.var((0, 2, 3)) - 1) ** 2).mean()
        loss = mse + cfg.l1 * (rec - x).abs().mean() + cfg.latent_reg * reg
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        run_loss.append(float(mse.detach()))
        done = step + 1
        if done % cfg.log_every == 0 or done == end:
            dt = (time.perf_counter() - t_log) / len(run_loss)
            history.append({"step": done, "mse": float(np.mean(run_loss))})
            print(f"step {done}/{cfg.steps} mse {np.mean(run_loss):.5f} "
                  f"({-10 * math.log10(max(np.mean(run_loss), 1e-10)):.2f} dB) lr {_lr(cfg, step):.2e} {dt:.2f} s/step",
                  flush=True)
            t_log, run_loss = time.perf_counter(), []
        if done % cfg.save_every == 0 or done == end:
            elapsed = train_seconds + time.perf_counter() - t0
            _save_state(latest, {"step": done, "model": model.state_dict(), "optimizer": opt.state_dict(),
                                 "generator": g.get_state(), "train_seconds": elapsed, "history": history,
                                 "config": {k: getattr(cfg, k) for k in _STATE_KEYS}})
            save_taesd_files(model, out / "weights")
    train_seconds += time.perf_counter() - t0
    times["train"] = _stage(f"train (steps {start}-{end}, {train_seconds:.1f} s in all runs)", t0)

    t0 = time.perf_counter()
    metrics = evaluate(model, test)
    times["eval"] = _stage("eval", t0)
    print(f"test-split reconstruction PSNR {metrics['psnr_mean']:.2f} dB (min {metrics['psnr_min']:.2f}) over "
          f"{metrics['frames']} frames at {cfg.size} px; latent mean {metrics['latent_mean']:.3f} "
          f"std {metrics['latent_std']:.3f}", flush=True)
    result = {"step": end, "finished": end == cfg.steps, "train_seconds_all_runs": train_seconds,
              "stage_seconds_this_run": times, **metrics, "config": dataclasses.asdict(cfg)}
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def config_parser(config_class, prog: str, doc: str, out_help: str) -> argparse.ArgumentParser:
    """`OUT` plus one `--flag` per field of a trainer's Config dataclass (shared by the demo's trainers)."""
    p = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    p.add_argument("out", help=out_help)
    for f in dataclasses.fields(config_class):
        if f.name == "out":
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            p.add_argument(flag, action="store_true")
        else:
            p.add_argument(flag, type=type(f.default), default=f.default)
    return p


def main(argv=None) -> int:
    p = config_parser(Config, "python -m atomo_demo.train_vae", __doc__,
                      "output folder: checkpoints/, weights/ (the VAELoader files), metrics.json")
    train(Config(**vars(p.parse_args(argv))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
