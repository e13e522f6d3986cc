"""The paper's fifth claim: zero-terminal-SNR v-prediction keeps the input's brightness where an eps model does not.

SD1.5's schedule never reaches pure noise in training (its last step keeps sqrt(0.00466) of the image), yet sampling
starts from pure noise, so an eps model cannot set the mean brightness of what it makes; AtomoVideo trains
v-prediction on the schedule rescaled to zero terminal SNR to fix that. Both arms here are trained the same way
(the same world, masks, steps and learning-rate schedule; `python -m atomo_demo.retrain OUT --with-eps`), each on a
base trained with its own objective, and sampled the same way through the nodes' glue (image conditioning +
sampler, 10 steps). Measured per test clip as mean CIELAB lightness L* of the generated frames against the VAE
round trip of the true frames: the error of frame 0 and the mean error over the clip.
"""
from __future__ import annotations

import json

import numpy as np
import torch

from ..atomo_core.metrics.colour import per_frame_lab
from ..atomo_core.metrics import prediction as pred
from . import world


def lightness(frames: np.ndarray) -> np.ndarray:
    """Mean L* of each frame [N, H, W, 3] in [0, 1]."""
    return per_frame_lab(np.asarray(frames, dtype=np.float32))[0][:, 0]


def brightness_errors(video: np.ndarray, reference: np.ndarray) -> dict:
    """|mean L*| differences: frame 0, and the mean over the frames (signed mean too: darker < 0 < lighter)."""
    d = lightness(video) - lightness(reference[:len(video)])
    return {"frame0": float(abs(d[0])), "clip": float(np.mean(np.abs(d))), "clip_signed": float(np.mean(d))}


def training_record(path) -> dict:
    """What the trainer wrote into the file about its run (step, lr, batch, frames; `atomovideo_training`)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        text = (f.metadata() or {}).get("atomovideo_training")
    return json.loads(text) if text else {}


SCHEDULE_KEYS = ("step", "lr", "batch_size", "frames", "ema")


def same_schedule(a: dict, b: dict) -> bool:
    return all(k in a and a.get(k) == b.get(k) for k in SCHEDULE_KEYS)


def measure_arm(demo, s, log=print) -> list[dict]:
    """Per clip of `s.split`: the brightness errors of one image-to-video sample (the claims' seeds and settings)."""
    from .claims import _decode, image_to_video

    rows = []
    for i, seed in enumerate(world.split_seeds(s.split, s.clips)):
        clip, _ = world.make_clip(seed, frames=max(32, s.window), size=s.size)
        truth = clip[:s.window].astype(np.float32) / 255.0
        roundtrip = _decode(demo, demo.vae.encode(torch.from_numpy(truth)))
        video = image_to_video(demo, "model", truth[0], s, s.seed + i)
        rows.append({"seed": seed, **brightness_errors(video, roundtrip)})
        log(f"v vs eps: {demo.name} clip {i + 1}/{s.clips}")
    return rows


def summarise(arms: dict) -> dict:
    """Means with 95 % intervals per arm, and eps minus v per clip (the same clips and seeds in both arms)."""
    out = {"measured": True, "reference": "VAE round trip of the true frames", "unit": "CIELAB L* (0-100)"}
    for name, rows in arms.items():
        out[name] = {k: pred.mean_ci([r[k] for r in rows]) for k in ("frame0", "clip", "clip_signed")}
        out[name]["per_clip"] = rows
    if {"v", "eps"} <= set(arms):
        out["eps_minus_v"] = {k: pred.mean_ci([e[k] - v[k] for e, v in zip(arms["eps"], arms["v"])])
                              for k in ("frame0", "clip")}
    return out
