"""Regenerates the demo model from nothing: the exact commands that made the committed weights, in order.

    python -m atomo_demo.retrain OUT [--install] [--with-eps]

Stages (each resumable: run the same command again after a stop and it continues; each prints its time):
1. VAE (TAESD layout) on world frames;   2. base image UNet on single latent frames;
3. world clips as video files;           4. AtomoVideo temporal layers + 9-channel conv_in with `atomo_train`.
`--install` copies the results over `atomo_demo/weights/`. Needs COMFYUI_PATH (stages 2 and 4 use the host).
`--with-eps` adds the paper's comparison model for claim 5 (not shipped): 5. the base with eps prediction on SD1.5's
schedule, 6. its AtomoVideo stage for the first EPS_STEPS steps of stage 4's schedule (constant learning rate), so
that `OUT/video/demo_atomovideo-step<EPS_STEPS>.safetensors` is the v model trained the same way.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

PACK = Path(__file__).resolve().parent.parent
CONFIG = PACK / "atomo_demo" / "configs" / "demo_video.toml"
VAE_ARGS = ["--steps", "1500", "--crop", "32", "--threads", "1", "--save-every", "100", "--log-every", "25"]
BASE_ARGS = ["--batch", "32", "--steps", "2500", "--lr", "1e-3", "--save-every", "250", "--log-every", "50"]
TRAIN_CLIPS, VAL_CLIPS = 512, 16
EPS_STEPS = 2000  # before stage 4's decay starts, so both arms have had the same constant learning rate


def _video_stage(out: Path, base: Path, video: Path, *extra: str) -> list[str]:
    vae, world = out / "vae", out / "world"
    return [sys.executable, "-m", "atomo_train", "--config", str(CONFIG), "--resume", "latest",
            "--set", f'data.path="{world / "train"}"', "--set", f'data.val_path="{world / "val"}"',
            "--set", f'output.dir="{video}"',
            "--set", f'model.checkpoint="{base / "weights" / "demo_unet.safetensors"}"',
            "--set", f'model.vae="{vae / "weights" / "atomo_demo_vae.safetensors"}"', *extra]


def eps_stages(out: Path) -> list[tuple[str, list[str], Path]]:
    """Claim 5's eps model: the base and video stages again with eps prediction (see the module docstring)."""
    base, video = out / "base-eps", out / "video-eps"
    return [
        ("base-eps", [sys.executable, "-m", "atomo_demo.train_base", str(base), "--vae", str(out / "vae" / "weights"),
                      *BASE_ARGS, "--prediction", "eps", "--resume"], base / "metrics.json"),
        ("video-eps", _video_stage(out, base, video, "--set", 'model.prediction="eps"', "--set",
                                   f"optim.max_steps={EPS_STEPS}", "--set", "optim.decay_steps=0",
                                   # its own latent cache: the cache is tied to the base file it was built with
                                   "--set", f'data.cache_dir="{video / "cache"}"'),
         video / "demo_atomovideo.safetensors"),
    ]


def stages(out: Path) -> list[tuple[str, list[str], Path]]:
    """(name, command, a file that exists once the stage is done)."""
    py = sys.executable
    vae, base, world, video = out / "vae", out / "base", out / "world", out / "video"
    return [
        ("vae", [py, "-m", "atomo_demo.train_vae", str(vae), *VAE_ARGS, "--resume"], vae / "metrics.json"),
        ("base", [py, "-m", "atomo_demo.train_base", str(base), "--vae", str(vae / "weights"), *BASE_ARGS,
                  "--resume"], base / "metrics.json"),
        ("world", [py, "-m", "atomo_demo.world", str(world / "train"), "--split", "train", "--count",
                   str(TRAIN_CLIPS)], world / "train" / f"train_{TRAIN_CLIPS - 1:05d}_s{TRAIN_CLIPS - 1}.txt"),
        ("world-val", [py, "-m", "atomo_demo.world", str(world / "val"), "--split", "val", "--count",
                       str(VAL_CLIPS)], None),
        ("video", _video_stage(out, base, video), video / "demo_atomovideo.safetensors"),
    ]


def install(out: Path) -> None:
    weights = PACK / "atomo_demo" / "weights"
    (weights / "atomovideo").mkdir(parents=True, exist_ok=True)
    shutil.copy2(out / "vae" / "weights" / "atomo_demo_vae.safetensors", weights / "atomo_demo_vae.safetensors")
    shutil.copy2(out / "base" / "weights" / "demo_unet.safetensors", weights / "demo_unet.safetensors")
    shutil.copy2(out / "video" / "demo_atomovideo.safetensors", weights / "atomovideo" / "demo_atomovideo.safetensors")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m atomo_demo.retrain", description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="working folder for every stage (checkpoints, logs, weights)")
    p.add_argument("--install", action="store_true", help="copy the finished weights over atomo_demo/weights/")
    p.add_argument("--with-eps", action="store_true", help="also train claim 5's eps model (not installed)")
    a = p.parse_args(argv)
    out = Path(a.out).resolve()
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    times = {}
    for name, cmd, done in stages(out) + (eps_stages(out) if a.with_eps else []):
        if name.startswith("world") and done is not None and done.is_file():
            print(f"[retrain] {name}: already written", flush=True)
            continue
        t0 = time.perf_counter()
        print(f"[retrain] {name}: {' '.join(cmd)}", flush=True)
        rc = subprocess.call(cmd, cwd=PACK, env=env)
        times[name] = time.perf_counter() - t0
        print(f"[retrain] {name}: {times[name]:.0f} s (exit {rc})", flush=True)
        if rc != 0:
            return rc
    print("[retrain] " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()), flush=True)
    if a.with_eps:
        print("[retrain] claim 5: python -m atomo_demo claims --eps-base "
              f"{out / 'base-eps' / 'weights' / 'demo_unet.safetensors'} --eps-atomovideo "
              f"{out / 'video-eps' / 'demo_atomovideo.safetensors'} --v-same-schedule "
              f"{out / 'video' / f'demo_atomovideo-step{EPS_STEPS:08d}.safetensors'}", flush=True)
    if a.install:
        install(out)
        print(f"[retrain] installed into {PACK / 'atomo_demo' / 'weights'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
