"""Command: score video files against their input image, to compare runs, settings and packs.

    python -m atomo_core.metrics VIDEO [VIDEO ...] --image IMAGE [--json OUT] [--plot OUT.png] [--fit-image]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import AtomoVideoError
from . import report as R
from .video_io import read_image, read_video

PROG = "python -m atomo_core.metrics"
COMPARE_KEYS = ["first_frame_psnr", "first_frame_ssim", "ssim_to_input_mean", "adjacent_ssim_mean",
                "warp_error_mean", "flow_square_mean", "lightness_drift_max", "lightness_frame0_minus_input"]


def score_file(video_path, image_path, *, fit_image=False, max_frames=None) -> dict:
    """The report of one video file against one image file (same computation as the node)."""
    video = read_video(video_path, max_frames)
    image = read_image(image_path)
    if fit_image:
        image = R.fit_image(image, video.shape[1], video.shape[2])
    try:
        v, im = R.check_inputs(video, image, video_input="VIDEO", image_input="--image")
    except AtomoVideoError as e:
        raise e.at(PROG) from None
    rep = R.evaluate(v, im)
    rep["source"] = {"video": str(video_path), "image": str(image_path), "image_fitted": bool(fit_image)}
    return rep


def _table(reports: list[dict]) -> str:
    names = [Path(r["source"]["video"]).name[:18] for r in reports]
    head = f"{'metric':<30}" + "".join(f"{n:>20}" for n in names)
    rows = [head]
    for key in COMPARE_KEYS:
        cells = []
        for r in reports:
            v = r["summary"].get(key)
            cells.append(f"{'n/a' if v is None else f'{v:.5g}':>20}")
        rows.append(f"{key:<30}" + "".join(cells))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog=PROG, description="AtomoVideo / AIGCBench-style metrics of image-to-video "
                                 "results: first-frame fidelity, image and temporal consistency, motion "
                                 "intensity, colour and brightness drift. CLIP similarities need a CLIP vision "
                                 "model and are computed by the ComfyUI metrics node only.")
    ap.add_argument("videos", nargs="+", metavar="VIDEO",
                    help="video file (mp4/webm/mov/mkv via PyAV, gif/webp/apng via Pillow) or a folder of frames")
    ap.add_argument("--image", required=True, help="the input image the video was generated from")
    ap.add_argument("--json", metavar="OUT", help="write the full report(s) here (one object, or a list for "
                                                  "several videos)")
    ap.add_argument("--plot", metavar="OUT.png", help="write the plot image (first video) here")
    ap.add_argument("--fit-image", action="store_true", help="resize/centre-crop the image to the video size "
                                                             "instead of refusing a size mismatch")
    ap.add_argument("--max-frames", type=int, default=None, help="score only the first N frames")
    args = ap.parse_args(argv)

    reports = []
    for path in args.videos:
        try:
            reports.append(score_file(path, args.image, fit_image=args.fit_image, max_frames=args.max_frames))
        except (AtomoVideoError, FileNotFoundError, ValueError) as e:
            print(f"{path}: {e}", file=sys.stderr)
            return 2
        print(f"== {path}\n{R.summary_text(reports[-1])}\n")
    if len(reports) > 1:
        print(_table(reports))
    if args.json:
        Path(args.json).write_text(R.to_json(reports[0] if len(reports) == 1 else reports))
    if args.plot:
        from PIL import Image

        from .plots import plot_report

        Image.fromarray((plot_report(reports[0]) * 255.0 + 0.5).astype("uint8")).save(args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
