"""The pack's own modules, exactly as ComfyUI loads them: one copy of each module in a test process.

ComfyUI names a folder pack's module after the folder's full path with "." replaced by "_x_" (`nodes.py`,
`load_custom_node`) and imports its submodules under that name. Tests do the same: `PACK` is registered once as
a package whose `__path__` is the repository (without running the pack's `__init__.py`, which needs the host),
so `core("temporal_layers")` is `<PACK>.atomo_core.temporal_layers`. When a host test later boots ComfyUI,
`load_custom_node` re-creates the package module and its imports find the submodules already loaded here.
Nothing imports the pack as a top-level `atomo_core`, so there are never two copies of a class.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACK = str(REPO).replace(".", "_x_")


def register() -> None:
    """Make `PACK` importable as a package (idempotent; keeps the module ComfyUI made, if it made one)."""
    if PACK not in sys.modules:
        package = importlib.util.module_from_spec(importlib.machinery.ModuleSpec(PACK, None, is_package=True))
        package.__path__ = [str(REPO)]
        sys.modules[PACK] = package


def module(dotted: str, *names: str):
    """`<PACK>.<dotted>`, or its attributes `names` (one value for one name, else a tuple); a name that is a
    submodule is imported."""
    register()
    mod = importlib.import_module(f"{PACK}.{dotted}")
    if not names:
        return mod
    values = tuple(getattr(mod, n) if hasattr(mod, n) else importlib.import_module(f"{mod.__name__}.{n}")
                   for n in names)
    return values[0] if len(values) == 1 else values


def core(dotted: str, *names: str):
    """`module("atomo_core.<dotted>", *names)`: the host-free method."""
    return module(f"atomo_core.{dotted}", *names)


def run_long_video(comfy, node_inputs: dict, on_segment=None):
    """The long-video loop (`atomo_host.continuation.run_long_video`) called with AtomoVideoLongVideo's own inputs,
    split the way the node splits them, plus a segment callback (which the node does not expose)."""
    host = module("atomo_host.continuation")
    rest = dict(node_inputs)
    positional = [rest.pop(name) for name in ("model", "positive", "negative", "vae")]
    settings = module("atomo_host.inputs").split_settings(rest, host.LongVideo,
                                                          module("atomo_host.sampling").SamplingSettings,
                                                          host.GivenFrames)
    return host.run_long_video(*positional, *settings, on_segment=on_segment)


register()
