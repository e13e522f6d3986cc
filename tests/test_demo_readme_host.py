"""The README's first command (*Quick start*), run exactly as written: `python -m atomo_demo run` boots ComfyUI,
executes the shipped demo workflow with the pack's own files and writes the input, both videos and a contact sheet
into `$ATOMO_OUT`."""
from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

import workflow_builder as wb
from demo_files import ensure_demo_atomovideo
from pack import module

pytestmark = pytest.mark.host
REPO = Path(__file__).resolve().parent.parent
MARKER = "<!-- demo-command -->"
I2V_FRAMES = wb.DEMO_FRAMES
LONG_FRAMES = wb.DEMO_FRAMES + (wb.DEMO_SEGMENTS - 1) * (wb.DEMO_FRAMES - wb.DEMO_CONTEXT)
# Frame 0 of the image-to-video against the demo VAE's round trip of the input (through the webp). With the
# untrained (identity) AtomoVideo file the model ignores the image latent and frame 0 is a sample of the base
# (measured 8-11 dB); the claims test (test_demo_claims_host.py) holds the SSIM target over the test clips.
MIN_FIRST_FRAME_PSNR = 22.5  # measured 24.5 dB with the committed 6500-step weights (20.7 with the 2000-step ones)
# The budget is 60 s on 2 free CPU cores; test machines are shared, so the test allows twice that.
MAX_SECONDS = float(os.environ.get("ATOMO_DEMO_MAX_SECONDS", "120"))


def demo_block() -> str:
    text = (REPO / "README.md").read_text()
    assert text.count(MARKER) == 1, f"the README must have exactly one {MARKER}"
    quick_start = text.split("## Quick start", 1)
    assert len(quick_start) == 2 and MARKER in quick_start[1].split("\n## ", 1)[0], \
        f"{MARKER} belongs in the README's Quick start section"
    m = re.match(r"\s*```sh\n(.*?)\n```", text.split(MARKER, 1)[1], re.S)
    assert m, "the README must have a ```sh block right after " + MARKER
    return m.group(1)


def frames(path: Path) -> list[np.ndarray]:
    if path.suffix == ".mp4":
        import av

        with av.open(str(path)) as f:
            return [fr.to_ndarray(format="rgb24") for fr in f.decode(video=0)]
    with Image.open(path) as im:
        return [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / mse))


def vae_round_trip(comfy, image: np.ndarray) -> np.ndarray:
    vae = module("atomo_host.demo_model").load_vae()
    pixels = torch.from_numpy(image.copy()).float()[None] / 255
    latent = comfy.call("VAEEncode", pixels=pixels, vae=vae)[0]
    decoded = comfy.call("VAEDecode", samples=latent, vae=vae)[0][0]
    return (decoded.clamp(0, 1) * 255).round().byte().numpy()


@pytest.fixture(scope="module")
def demo_run(comfy, tmp_path_factory):
    ensure_demo_atomovideo()
    out = tmp_path_factory.mktemp("demo") / "out"
    env = dict(os.environ, ATOMO_OUT=str(out), COMFYUI_PATH=str(comfy.path))
    started = time.perf_counter()
    proc = subprocess.run(["bash", "-e", "-c", demo_block()], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900)
    wall = time.perf_counter() - started
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc, wall


def test_readme_demo_writes_every_file_with_the_expected_frames(demo_run):
    out = demo_run[0]
    names = {"input.png", "image_to_video.webp", "image_to_video.mp4", "long_video.webp", "long_video.mp4",
             "contact_sheet.png"}
    assert {p.name for p in out.iterdir()} == names
    assert (out / "input.png").read_bytes() == (REPO / "atomo_demo" / "assets" / wb.DEMO_IMAGE).read_bytes()
    for stem, n in (("image_to_video", I2V_FRAMES), ("long_video", LONG_FRAMES)):
        for suffix in (".webp", ".mp4"):
            video = frames(out / f"{stem}{suffix}")
            assert len(video) == n, (stem, suffix, len(video))
            assert video[0].shape == (wb.DEMO_SIZE, wb.DEMO_SIZE, 3)
    # contact sheet: 16 frames a row, the image-to-video's row, a gap, then the continuation's rows
    rows = 1 + -(-LONG_FRAMES // 16)
    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.size == (16 * wb.DEMO_SIZE, rows * wb.DEMO_SIZE + 6)
        cell = np.asarray(sheet.convert("RGB"))[:wb.DEMO_SIZE, :wb.DEMO_SIZE]
    np.testing.assert_array_equal(cell, frames(out / "image_to_video.webp")[0])


def test_readme_demo_shows_progress_and_its_time(demo_run):
    _, proc, wall = demo_run
    steps = wb.DEMO_STEPS
    assert "Image to video: 100%" in proc.stderr and f"{steps}/{steps}" in proc.stderr, proc.stderr[-2000:]
    total = steps * wb.DEMO_SEGMENTS
    assert f"{wb.DEMO_SEGMENTS}-segment continuation: 100%" in proc.stderr and f"{total}/{total}" in proc.stderr
    m = re.search(r"ComfyUI boot ([\d.]+) s, workflow ([\d.]+) s, total ([\d.]+) s", proc.stdout)
    assert m, proc.stdout[-2000:]
    boot, work, total_s = map(float, m.groups())
    print(f"demo command: boot {boot:.1f} s, workflow {work:.1f} s, total {total_s:.1f} s, wall {wall:.1f} s")
    assert abs(boot + work - total_s) < 0.2 and total_s <= wall
    assert wall < MAX_SECONDS, f"the demo took {wall:.1f} s (budget {MAX_SECONDS} s)"


def test_readme_demo_first_frames_against_the_vae_round_trip_of_the_input(comfy, demo_run, record_property):
    out = demo_run[0]
    reference = vae_round_trip(comfy, np.asarray(Image.open(out / "input.png").convert("RGB")))
    first = psnr(frames(out / "image_to_video.webp")[0], reference)
    pinned = psnr(frames(out / "long_video.webp")[0], reference)
    record_property("first_frame_psnr_db", round(first, 2))
    record_property("continuation_first_frame_psnr_db", round(pinned, 2))
    # The continuation's frame 0 is the input's latent held fixed, but drift control then matches the whole
    # segment's CIELAB statistics to the input, which moves frame 0 too: reported, not bounded.
    print(f"frame 0 PSNR vs the VAE round trip: image-to-video {first:.2f} dB, continuation {pinned:.2f} dB")
    assert first > MIN_FIRST_FRAME_PSNR, first
