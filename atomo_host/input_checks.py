"""The checks every pack node runs on its inputs before its own work, read from the node's schema.

ComfyUI's own prompt checks let NaN through (NaN is neither below a minimum nor above a maximum), and tensors from
other nodes are never checked at all, so a NaN `cfg` or a NaN patch in an image would end as a black video. Here
every FLOAT/INT widget must be a finite number and every IMAGE, MASK, LATENT and CONDITIONING tensor finite; the
errors name the input (the node layer adds the node) and say what to do.
"""
from __future__ import annotations

import math

import torch
from comfy_api.latest import io

from ..atomo_core.errors import AtomoVideoError

NUMBER_INPUTS = (io.Float.Input, io.Int.Input)
TENSOR_TYPES = ("IMAGE", "MASK", "LATENT", "CONDITIONING")
_UPSTREAM = {
    "IMAGE": "Load or make the image again, or check the node that produced it (its settings or its inputs)",
    "MASK": "Make the mask again, or check the node that produced it",
    "LATENT": "Check the node that produced this latent (a sampler that diverged, a latent math node with a "
              "non-finite factor) and make it again",
    "CONDITIONING": "Encode the prompt / conditioning again, or check the node that produced it",
}


def number_inputs(schema) -> list:
    """The FLOAT and INT widget inputs of a node schema."""
    return [i for i in schema.inputs if isinstance(i, NUMBER_INPUTS)]


def _describe(value) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, float) and math.isinf(value):
        return "+inf" if value > 0 else "-inf"
    return repr(value)


def check_number(spec, value) -> None:
    """A FLOAT/INT widget value: a finite number (ints for INT inputs)."""
    kind = "an integer" if isinstance(spec, io.Int.Input) else "a number"
    allowed = (f"between {spec.min} and {spec.max}" if spec.min is not None and spec.max is not None
               else "in the widget's range")
    remedy = f"set {kind} {allowed} (default {spec.default})"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AtomoVideoError(spec.id, f"got {_describe(value)} ({type(value).__name__}), not {kind}; {remedy}")
    if not math.isfinite(float(value)):
        raise AtomoVideoError(spec.id, f"{_describe(value)} is not a finite number; {remedy}")
    if isinstance(spec, io.Int.Input) and isinstance(value, float) and not value.is_integer():
        raise AtomoVideoError(spec.id, f"{value} is not an integer; {remedy}")


def _bad_count(tensor: torch.Tensor) -> int:
    if not tensor.is_floating_point() and not tensor.is_complex():
        return 0
    return int((~torch.isfinite(tensor)).sum())


def check_finite_tensor(tensor, field: str, kind: str, what: str = "") -> None:
    """`tensor` (part of input `field` of type `kind`) has no NaN or infinite value."""
    if not isinstance(tensor, torch.Tensor):
        return
    bad = _bad_count(tensor)
    if not bad:
        return
    where = ""
    if tensor.ndim >= 2 and tensor.shape[0] > 1:
        frames = (~torch.isfinite(tensor)).flatten(1).any(dim=1).nonzero().flatten().tolist()
        shown = ", ".join(str(f) for f in frames[:8]) + (", ..." if len(frames) > 8 else "")
        where = f" (in batch item(s) {shown} of {tensor.shape[0]})"
    raise AtomoVideoError(field, f"the {kind}{what} holds {bad} NaN or infinite value(s) of {tensor.numel()}"
                                 f"{where}; they would give a NaN video. {_UPSTREAM[kind]}.")


def _cond_tensors(conditioning):
    """(what, tensor) of every tensor a CONDITIONING list carries (embeddings, pooled output, model_conds)."""
    if not isinstance(conditioning, (list, tuple)):
        return
    for i, entry in enumerate(conditioning):
        if not isinstance(entry, (list, tuple)) or len(entry) < 2:
            continue
        yield f" (entry {i} embedding)", entry[0]
        opts = entry[1] if isinstance(entry[1], dict) else {}
        yield f" (entry {i} pooled_output)", opts.get("pooled_output")
        for key, value in (opts.get("model_conds") or {}).items():
            yield f" (entry {i} '{key}')", getattr(value, "cond", value)
        for key in ("concat_latent_image", "concat_mask"):
            yield f" (entry {i} '{key}')", opts.get(key)


def check_tensor_input(kind: str, field: str, value) -> None:
    if kind in ("IMAGE", "MASK"):
        check_finite_tensor(value, field, kind)
    elif kind == "LATENT" and isinstance(value, dict):
        check_finite_tensor(value.get("samples"), field, kind)
        check_finite_tensor(value.get("noise_mask"), field, kind, " noise_mask")
    elif kind == "CONDITIONING":
        for what, tensor in _cond_tensors(value):
            check_finite_tensor(tensor, field, kind, what)


def check_node_inputs(schema, values: dict) -> None:
    """Every number widget first (cheap), then every tensor input, in schema order; absent optional inputs are
    skipped. Raises `AtomoVideoError` naming the first bad input."""
    for spec in number_inputs(schema):
        if values.get(spec.id) is not None:
            check_number(spec, values[spec.id])
    for spec in schema.inputs:
        kind = spec.get_io_type()
        if kind in TENSOR_TYPES and values.get(spec.id) is not None:
            check_tensor_input(kind, spec.id, values[spec.id])
