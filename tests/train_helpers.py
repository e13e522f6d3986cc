"""Shared pieces of the trainer's host tests: a small run config and an in-memory set of encoded clips."""
from __future__ import annotations

from pack import module
import torch

FRAMES = 4
SIZE = 32


def run_config(comfy, checkpoint: str, out_dir, **sections) -> dict:
    """A TOML-shaped dict for a tiny run on the fixture checkpoint; `sections` update single keys."""
    d = {
        "data": {"path": str(out_dir / "videos"), "frames": FRAMES, "size": 64},
        "model": {"checkpoint": str(comfy.models_dir / "checkpoints" / checkpoint), "max_frames": FRAMES},
        "optim": {"lr": 1e-3, "warmup_steps": 2, "max_steps": 6, "batch_size": 2, "seed": 0},
        "output": {"dir": str(out_dir / "run"), "save_every": 1000, "state_every": 1000, "log_every": 1},
        "conditioning": {"dropout": 0.1, "first_k": 0.5},
    }
    for section, values in sections.items():
        d.setdefault(section, {}).update(values)
    return d


class EncodedClips(torch.utils.data.Dataset):
    """Items shaped like `data.dataset.CachedClips`: model-space latents and text embeddings."""

    def __init__(self, latents: list, texts: list):
        self.latents, self.texts = latents, texts

    def __len__(self):
        return len(self.latents)

    def __getitem__(self, i):
        return {"latents": self.latents[i], "text": self.texts[i], "clip_id": f"clip{i}"}


def encode_world_clips(comfy, checkpoint: str, count: int, split: str = "train") -> tuple[EncodedClips, torch.Tensor]:
    """Synthetic moving-shape clips encoded with the checkpoint's own VAE and CLIP; and the empty-prompt text."""
    make_clip, split_seeds = module("atomo_demo.world", "make_clip", "split_seeds")

    setup = module("atomo_train.model_setup")
    enc = module("atomo_train.encoders")
    base = setup.load_base(comfy.models_dir / "checkpoints" / checkpoint, clip=True, vae=True)
    vae_encode = enc.vae_encoder(base.vae, base.patcher.get_model_object("latent_format"))
    text_encode = enc.text_encoder(base.clip)
    latents, texts = [], []
    for seed in split_seeds(split, count):
        frames, caption = make_clip(seed, frames=FRAMES, size=SIZE)
        pixels = torch.from_numpy(frames).float().div(255).permute(0, 3, 1, 2)
        latents.append(vae_encode(pixels))
        texts.append(text_encode([caption])[0])
    return EncodedClips(latents, texts), text_encode([""])[0]


def toml_text(d: dict) -> str:
    """A nested dict of sections as TOML (strings, numbers, booleans and lists of them)."""
    import json

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(str(v))

    lines = []
    for section, values in d.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {value(v)}" for k, v in values.items()]
        lines.append("")
    return "\n".join(lines)
