"""`python -m atomo_demo run`, from the pack's folder with the Python that runs ComfyUI.

`run` boots ComfyUI in this process (COMFYUI_PATH, or the ComfyUI the pack sits in), loads the pack as ComfyUI does
and executes the shipped `workflows/demo.json` headless (`atomo_host.demo_run`), writing `input.png`, the videos
(webp + mp4) and `contact_sheet.png` into `$ATOMO_OUT` (default `./output/demo`). The trainers of the demo's models
are modules of their own: `python -m atomo_demo.world`, `.train_vae`, `.train_base`.

`claims` measures the AtomoVideo paper's claims on the demo model (`atomo_demo.claims`; `claims --help` for its
options). `preview-colors` fits the live-preview colours of the demo VAE (`atomo_demo.preview_colors`).
"""
import time

STARTED = time.perf_counter()  # the demo's time includes booting ComfyUI

import argparse  # noqa: E402
import importlib  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from atomo_train.host_boot import BootError, boot  # noqa: E402

DEFAULT_OUT = os.path.join("output", "demo")
# commands whose pack module parses its own arguments: main(argv), run after booting ComfyUI on the CPU
COMMANDS = {"claims": "atomo_demo.claims", "preview-colors": "atomo_demo.preview_colors"}


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m atomo_demo", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the demo workflow headless (image-to-video and a 4-segment "
                                     "continuation of the bundled picture)")
    run.add_argument("--out", default=os.environ.get("ATOMO_OUT") or DEFAULT_OUT,
                     help="output folder (default: $ATOMO_OUT, else ./output/demo)")
    run.add_argument("--cpu", action="store_true", help="run on the CPU even when a GPU is available")
    run.add_argument("--threads", type=int, default=1,
                     help="CPU threads for torch (default 1: the demo's tensors are tiny, so more threads gain "
                          "little, and on a busy machine they wait on each other: 2 threads were 7x slower than "
                          "1 on two shared cores)")
    sub.add_parser("claims", add_help=False, help="measure the AtomoVideo claims on the demo model against the "
                                                  "synthetic world's ground truth (claims --help for options)")
    return ap


def run_command(name: str, argv: list) -> int:
    try:
        pack = boot(force_cpu=True)
    except BootError as e:
        print(f"atomo_demo: {e}", file=sys.stderr)
        return 2
    return importlib.import_module(f"{pack.__name__}.{COMMANDS[name]}").main(argv)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in COMMANDS:
        return run_command(argv[0], argv[1:])
    args = parser().parse_args(argv)
    try:
        pack = boot(force_cpu=args.cpu)
    except BootError as e:
        print(f"atomo_demo: {e}", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(max(1, args.threads))
    demo = importlib.import_module(f"{pack.__name__}.atomo_host.demo_run")
    return demo.main(Path(args.out).resolve(), STARTED)


if __name__ == "__main__":
    sys.exit(main())
