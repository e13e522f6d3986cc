"""The README's CPU smoke run, executed as written: it makes its clips and tiny base, trains, the loss goes down,
and the file it writes loads in AtomoVideoLoader and samples."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
MARKER = "<!-- train-smoke-command -->"


def smoke_block() -> str:
    text = (REPO / "README.md").read_text()
    after = text.split(MARKER, 1)[1]
    m = re.match(r"\s*```sh\n(.*?)\n```", after, re.S)
    assert m, "the README must have a ```sh block right after " + MARKER
    return m.group(1)


def test_readme_smoke_run_trains_and_its_file_loads_and_samples(comfy, tmp_path):
    out = tmp_path / "smoke"
    env = dict(os.environ, ATOMO_OUT=str(out), COMFYUI_PATH=str(comfy.path))
    proc = subprocess.run(["bash", "-e", "-c", smoke_block()], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    weights, base = out / "atomovideo.safetensors", out / "tiny_sd15.safetensors"
    assert weights.is_file() and base.is_file()
    losses = [json.loads(line)["loss"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    q = len(losses) // 4
    first, last = sum(losses[:q]) / q, sum(losses[-q:]) / q
    assert len(losses) == 28 and last < 0.95 * first, (first, last, losses)
    evals = {s: json.loads((out / "validation" / f"step{s:08d}.json").read_text()) for s in (0, 14, 28)}
    assert evals[28]["losses"]["mean"] < evals[0]["losses"]["mean"], evals
    assert (out / "validation" / "step00000028_sample0.webp").is_file()
    assert (out / "validation" / "step00000028_sheet.png").is_file()
    assert evals[28]["metrics"][0]["first_frame_psnr"] is not None
    assert list((out / "logs").rglob("events.out.tfevents.*"))  # TensorBoard

    shutil.copy(base, comfy.models_dir / "checkpoints" / "readme_tiny_sd15.safetensors")
    shutil.copy(weights, comfy.models_dir / "atomovideo" / "readme_smoke.safetensors")
    model, clip, vae = comfy.load_checkpoint("readme_tiny_sd15.safetensors")
    inflated = comfy.call("AtomoVideoLoader", model=model, weights="readme_smoke.safetensors")[0]
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(0))
    pos, neg, latent = comfy.call("AtomoVideoImageConditioning", positive=comfy.encode(clip, "a red square"),
                                  negative=comfy.encode(clip, ""), vae=vae, image=image, frames=4, width=64,
                                  height=64)
    samples = comfy.call("AtomoVideoSampler", model=inflated, positive=pos, negative=neg, latent=latent, seed=0,
                         steps=2, cfg=3.0, cfg_rescale=0.7, sampler_name="ddim", scheduler="trailing",
                         denoise=1.0)[0]["samples"]
    assert samples.shape == (4, 4, 8, 8) and torch.isfinite(samples).all()
