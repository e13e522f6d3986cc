"""Command line: `python -m atomo_train [train|cache] --config run.toml [--set key=value ...] [--resume latest]`.

`train` (the default) builds the data cache first when it is missing (`cache` does only that), then trains.
Runs under `accelerate launch` the same way: every process runs this; the cache is built by the main process.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from . import checkpoints
from .config import load_config
from .errors import ConfigError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m atomo_train",
                                description="Train AtomoVideo temporal layers on your SD1.5 checkpoint.")
    p.add_argument("command", nargs="?", choices=("train", "cache", "tiny-base"), default="train",
                   help="train (default); cache: only build the data cache; tiny-base PATH: write a tiny random "
                        "SD1.5-detected checkpoint for smoke runs")
    p.add_argument("path", nargs="?", help="tiny-base: the .safetensors file to write")
    p.add_argument("--config", help="the run's TOML file (see README, Training)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config key; value in TOML syntax, e.g. --set optim.lr=3e-5")
    p.add_argument("--resume", nargs="?", const="latest", default=None,
                   help="continue from the newest training state in output.dir (or the given state folder)")
    p.add_argument("--rebuild-cache", action="store_true", help="rebuild the data cache even if it exists")
    return p


def file_fingerprint(path: Path) -> dict:
    """Name, size and a hash of the first and last MiB: tells checkpoints apart without reading gigabytes."""
    path = Path(path)
    size = path.stat().st_size
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        if size > 2 << 20:
            f.seek(-(1 << 20), 2)
            h.update(f.read())
    return {"name": path.name, "size": size, "sha256_head_tail": h.hexdigest()}


def build_cache(cfg, base, rebuild: bool, log=print) -> Path:
    from .data.cache import build_cache as data_build_cache
    from .encoders import build_encoders

    fingerprint = {"checkpoint": file_fingerprint(cfg.model.checkpoint)}
    if cfg.model.vae is not None:
        fingerprint["vae"] = file_fingerprint(cfg.model.vae)
    clip_vision, which = None, None
    if cfg.model.clip_vision is not None:
        from .image_projection import clip_input_of, load_clip_vision

        which = clip_input_of(cfg.model, cfg.init)
        clip_vision = load_clip_vision(cfg.model.clip_vision)
        fingerprint["clip_vision"] = {**file_fingerprint(cfg.model.clip_vision), "output": which}

    def progress(done: int, total: int, name: str) -> None:
        log(f"atomo_train: cache {done}/{total} {name}")

    encoders = build_encoders(base, clip_vision, which) if which else build_encoders(base)
    return data_build_cache(cfg.data, encoders, fingerprint, rebuild=rebuild, progress=progress)


def image_adapter(cfg, base, dataset):
    """The run's image projection (None without one); its CLIP width is the cached features' width."""
    from .image_projection import build_adapter

    if cfg.init.ip_adapter is None and cfg.model.image_projection == "none":
        return None
    if not dataset.has_image_tokens:
        raise ConfigError("model.clip_vision", f"the cache in '{cfg.data.cache_path}' holds no CLIP-vision "
                          "features; rebuild it with model.clip_vision set (`cache --rebuild`)")
    width = dataset[0]["image_tokens"].shape[-1]
    return build_adapter(cfg.model, cfg.init, base.patcher.get_model_object("diffusion_model"), width,
                         cfg.optim.seed)


def run_train(args, cfg) -> int:
    from .data.dataset import CachedClips
    from .loop import make_accelerator, train
    from .model_setup import TrainerModel, initial_weights, load_base, unet_layout
    from .validation import Validator

    accelerator = make_accelerator(cfg)
    base = load_base(cfg.model.checkpoint, clip=True, vae=True, vae_path=cfg.model.vae)
    if accelerator.is_main_process:
        cache = build_cache(cfg, base, args.rebuild_cache, log=accelerator.print)
    accelerator.wait_for_everyone()
    cache = cfg.data.cache_path
    dataset = CachedClips(cache, split="train")
    try:
        val = CachedClips(cache, split="val")
        if len(val) == 0:
            val = dataset
    except (ConfigError, FileNotFoundError, KeyError, ValueError):
        val = dataset
    null_text = dataset.null_text
    weights = initial_weights(cfg.model, cfg.init, unet_layout(base.patcher), cfg.optim.seed)
    tm = TrainerModel(base, weights, cfg.data.frames, checkpointing=cfg.model.gradient_checkpointing,
                      image_adapter=image_adapter(cfg, base, dataset))
    validator = None
    if cfg.validation.every:
        clip_vision = None
        if tm.uses_image and cfg.validation.samples:
            from .image_projection import load_clip_vision

            clip_vision = load_clip_vision(cfg.model.clip_vision)
        validator = Validator(cfg, tm, base.vae, val, null_text, clip_vision)
    try:
        result = train(cfg, tm, dataset, null_text, accelerator=accelerator, resume=args.resume,
                       validator=validator)
    finally:
        tm.detach()
    if accelerator.is_main_process:
        print(f"atomo_train: {result.step} steps; weights: {result.weights}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "tiny-base":
        from .tiny_base import write_tiny_base

        if not args.path:
            print("atomo_train: tiny-base needs the path of the checkpoint to write", file=sys.stderr)
            return 2
        print(f"atomo_train: wrote {write_tiny_base(Path(args.path))}")
        return 0
    try:
        cfg = load_config(args.config, args.overrides)
        if args.command == "cache":
            from .model_setup import load_base

            base = load_base(cfg.model.checkpoint, clip=True, vae=True, vae_path=cfg.model.vae)
            print(f"atomo_train: cache ready in {build_cache(cfg, base, args.rebuild_cache)}")
            return 0
        return run_train(args, cfg)
    except (ConfigError, checkpoints.WriteError) as e:
        print(f"atomo_train: {e}", file=sys.stderr)
        return 2
