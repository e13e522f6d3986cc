"""Booting ComfyUI in-process as a library for the trainer (no server, no prompt queue).

Host-free until `boot()` runs: `__main__` imports this module before ComfyUI is on `sys.path`.
"""
from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parent.parent


class BootError(RuntimeError):
    pass


def find_comfyui() -> Path:
    """COMFYUI_PATH, else the ComfyUI this pack sits in (`ComfyUI/custom_nodes/<pack>`)."""
    candidates = []
    if os.environ.get("COMFYUI_PATH"):
        candidates.append(Path(os.environ["COMFYUI_PATH"]))
    if PACK_DIR.parent.name == "custom_nodes":
        candidates.append(PACK_DIR.parent.parent)
    for c in candidates:
        if (c / "comfy" / "model_patcher.py").is_file() and (c / "nodes.py").is_file():
            return c.resolve()
    raise BootError("ComfyUI not found: set COMFYUI_PATH to your ComfyUI folder, or run the trainer from a pack "
                    "installed in ComfyUI/custom_nodes/.")


def select_device_from_local_rank() -> None:
    """One GPU per process: ComfyUI picks torch.cuda.current_device(), so set it before the host imports."""
    import torch

    if torch.cuda.is_available() and "LOCAL_RANK" in os.environ:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))


def boot(force_cpu: bool = False):
    """Import ComfyUI, load this pack with `nodes.load_custom_node` and return the pack's module."""
    comfy_path = find_comfyui()
    # `python -m` from the pack folder puts the folder first on sys.path, where the pack's own `nodes/` would
    # shadow ComfyUI's `nodes` module: take it out before importing the host.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != PACK_DIR]
    sys.path.insert(0, str(comfy_path))
    select_device_from_local_rank()
    import torch

    from comfy.cli_args import args

    if force_cpu or not torch.cuda.is_available():
        args.cpu = True
    args.disable_api_nodes = True
    import utils.extra_config  # noqa: F401  (ComfyUI imports it before `nodes`)
    import nodes

    if not asyncio.run(nodes.load_custom_node(str(PACK_DIR))):
        raise BootError(f"ComfyUI failed to import the pack from {PACK_DIR} (see the log above)")
    return sys.modules[str(PACK_DIR).replace(".", "_x_")]
