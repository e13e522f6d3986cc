"""`python -m atomo_train ...` and `accelerate launch -m atomo_train ...`, run from the pack's folder.

Boots ComfyUI, loads the pack as ComfyUI does and hands over to the pack's own copy of `atomo_train.cli`, so
every module is the copy the nodes use.
"""
import importlib
import importlib.util
import os
import sys

from atomo_train.host_boot import BootError, boot


TRAINING_PACKAGES = ("accelerate", "tensorboard")  # requirements-train.txt


def missing_packages(find_spec=importlib.util.find_spec) -> str | None:
    """The message for a Python without the trainer's requirements (ComfyUI installs neither), else None."""
    missing = [name for name in TRAINING_PACKAGES if find_spec(name) is None]
    if not missing:
        return None
    return (f"the trainer needs {' and '.join(missing)}, which ComfyUI does not install: run "
            "`python -m pip install -r requirements-train.txt` from the pack's folder with the Python that runs "
            "ComfyUI, then start the training again")


def run() -> int:
    argv = sys.argv[1:]
    message = missing_packages()
    if message:
        print(f"atomo_train: {message}", file=sys.stderr)
        return 2
    try:
        pack = boot(force_cpu="--cpu" in argv or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true"))
    except BootError as e:
        print(f"atomo_train: {e}", file=sys.stderr)
        return 2
    cli = importlib.import_module(f"{pack.__name__}.atomo_train.cli")
    return cli.main([a for a in argv if a != "--cpu"])


if __name__ == "__main__":
    sys.exit(run())
