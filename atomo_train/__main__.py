"""`python -m atomo_train ...` and `accelerate launch -m atomo_train ...`, run from the pack's folder.

Boots ComfyUI, loads the pack as ComfyUI does and hands over to the pack's own copy of `atomo_train.cli`, so
every module is the copy the nodes use.
"""
import importlib
import os
import sys

from atomo_train.host_boot import BootError, boot


def run() -> int:
    argv = sys.argv[1:]
    try:
        pack = boot(force_cpu="--cpu" in argv or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true"))
    except BootError as e:
        print(f"atomo_train: {e}", file=sys.stderr)
        return 2
    cli = importlib.import_module(f"{pack.__name__}.atomo_train.cli")
    return cli.main([a for a in argv if a != "--cpu"])


if __name__ == "__main__":
    sys.exit(run())
