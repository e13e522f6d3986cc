"""Queue-time checks of the nodes' file and choice inputs (the nodes' V3 `validate_inputs`).

ComfyUI 0.3.64 checks the combo values of V1 nodes when a prompt is queued ("Value not in list") but not those of
V3 nodes: without these checks a missing weight file was reported only when the loader ran, after the checkpoint
had loaded. The checks read folder listings and safetensors headers (names and shapes, no tensor data), so a wrong
prompt is refused in milliseconds, naming the folders searched, what is in them, and which workflows run without
an AtomoVideo file. Pickled files (`.ckpt`, `.pth`, `.bin`) can only be identified by loading them whole (PIA's is
1.6 GB), so for them only the name is checked here; their content is checked when the node runs.

Each function returns True or the message ComfyUI shows (a `validate_inputs` return value).
"""
from __future__ import annotations

import os

import torch
from safetensors import safe_open

import folder_paths

from ..atomo_core import animatediff_format
from ..atomo_core import image_projection as ipj
from ..atomo_core.errors import AtomoVideoError
from ..atomo_core.weight_files import ACCEPTED
from ..atomo_core.weight_format import is_atomovideo
from . import model_files

# Which shipped workflows run without an AtomoVideo file (no AtomoVideo weights have been published).
RUNNABLE_WORKFLOWS = (
    "Workflows that need no AtomoVideo file: 'demo' runs the pack's own small model with nothing to download; "
    "'public_weights' runs public files (an SD1.5 checkpoint, pia.ckpt from https://huggingface.co/Leoxing/PIA, "
    "ip-adapter_sd15.safetensors from https://huggingface.co/h94/IP-Adapter and the ViT-H CLIP vision encoder; "
    "see the README's 'Model files').")
SHOWN_FILES = 6  # files named per folder in a message


def _folder_contents(path: str) -> str:
    if not os.path.isdir(path):
        return f"{path} (does not exist)"
    names = sorted(folder_paths.filter_files_extensions(
        folder_paths.recursive_search(path, excluded_dir_names=[".git"])[0], folder_paths.supported_pt_extensions))
    if not names:
        return f"{path} (empty)"
    more = f", ... {len(names) - SHOWN_FILES} more" if len(names) > SHOWN_FILES else ""
    return f"{path} (has {', '.join(names[:SHOWN_FILES])}{more})"


def _message(node: str, field: str, text: str) -> str:
    return str(AtomoVideoError(field, text, node))


def not_found(node: str, field: str, name: str, folders: tuple[str, ...], hint: str = "") -> str:
    searched = "; ".join(_folder_contents(p) for p in model_files.folder_paths_of(folders))
    return _message(node, field, f"'{name}' was not found. Searched: {searched}. Put the file into one of these "
                                 "folders and press R (refresh), or pick a file that is there."
                                 + (f" {hint}" if hint else ""))


def _unreadable(node: str, field: str, name: str, path: str) -> str:
    """A damaged safetensors header, in the words of the loader's reader (`weight_files.read_file`)."""
    return _message(node, field, f"'{name}' ({path}) is not a readable safetensors file (its header is cut short or "
                                 "damaged, e.g. by an interrupted download): download it again from its source.")


def header_tensors(path: str) -> tuple[dict, dict]:
    """(name -> empty tensor of the stored shape on the meta device, metadata) of a safetensors file: enough for
    format detection, which reads names and shapes only."""
    with safe_open(path, framework="pt") as f:
        tensors = {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}
        return tensors, dict(f.metadata() or {})


def _find(node: str, folders: tuple[str, ...], name: str, field: str):
    """(path, None) of `name` in `folders`, or (None, the message)."""
    for folder in folders:
        path = folder_paths.get_full_path(folder, name)
        if path:
            return path, None
    return None, not_found(node, field, name, folders, RUNNABLE_WORKFLOWS)


def temporal_weights(node: str, name, folders: tuple[str, ...], field: str = "weights"):
    """AtomoVideo Loader's `weights`: the file exists and (for safetensors) is a format the loader knows."""
    if name is None:  # a linked input: its value is known only when the prompt runs
        return True
    path, message = _find(node, folders, name, field)
    if path is None:
        return message
    if not path.endswith(".safetensors"):
        return True
    try:
        tensors, metadata = header_tensors(path)
        if not is_atomovideo(metadata):
            animatediff_format.detect(tensors)
    except AtomoVideoError as e:
        return _message(node, field, f"'{name}' ({path}) is not a temporal-layer file this pack loads: "
                                     f"{e.message}. Accepted: {ACCEPTED}.")
    except Exception:  # safetensors' own errors for a damaged header
        return _unreadable(node, field, name, path)
    return True


def projection_file(node: str, name, folder: str, from_model: str, field: str = "projection"):
    """AtomoVideo CLIP Vision Injection's `projection`: `from_model`, or an IP-Adapter SD1.5 file in `folder`."""
    if name is None or name == from_model:
        return True
    path, message = _find(node, (folder,), name, field)
    if path is None:
        return message
    if not path.endswith(".safetensors"):
        return True
    try:
        tensors, _ = header_tensors(path)
        ipj.detect_kind(*ipj.split_prefixed(tensors, name), name)
    except AtomoVideoError as e:
        return _message(node, field, f"{e.message} ({path}). Choose an IP-Adapter SD1.5 file (e.g. "
                                     "ip-adapter_sd15.safetensors from https://huggingface.co/h94/IP-Adapter) or "
                                     f"'{from_model}'.")
    except Exception:
        return _unreadable(node, field, name, path)
    return True


def choices(node_cls, **values):
    """Every given combo value of `node_cls` is one of its schema's options (None: linked, not known yet)."""
    schema = node_cls.define_schema()
    options = {i.id: list(i.options) for i in schema.inputs if getattr(i, "options", None)}
    for field, value in values.items():
        if value is not None and field in options and value not in options[field]:
            return _message(schema.node_id, field, f"'{value}' is not one of {options[field]}. The workflow was "
                                                   "made for another version of the node or edited by hand: pick "
                                                   "a value in the node.")
    return True


def demo_files(node: str, base):
    """AtomoVideo Demo Model's `base` is one of the pack's demo bases, and the files it loads are in the pack."""
    from . import demo_model

    bases = demo_model.bundled_bases()
    if base is not None and base not in bases:
        return _message(node, "base", f"'{base}' is not one of the pack's demo bases {bases} "
                                      f"(files in {demo_model.WEIGHTS_DIR}).")
    try:
        demo_model.bundled_file(base or demo_model.DEFAULT_BASE, "base")
        demo_model.bundled_file(demo_model.VAE_FILE, "base")
    except AtomoVideoError as e:
        return str(e.at(node))
    return True
