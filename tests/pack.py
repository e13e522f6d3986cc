"""The pack's own modules, as ComfyUI loads them, for tests and benchmarks (one copy of each module)."""
from __future__ import annotations


def run_long_video(comfy, node_inputs: dict, on_segment=None):
    """The long-video loop (`atomo_host.continuation.run_long_video`) called with AtomoVideoLongVideo's own inputs,
    split the way the node splits them, plus a segment callback (which the node does not expose)."""
    host = comfy.pack_module("atomo_host.continuation")
    split = comfy.pack_module("atomo_host.inputs").split_settings
    rest = dict(node_inputs)
    positional = [rest.pop(name) for name in ("model", "positive", "negative", "vae")]
    settings = split(rest, host.LongVideo, comfy.pack_module("atomo_host.sampling").SamplingSettings,
                     host.GivenFrames)
    return host.run_long_video(*positional, *settings, on_segment=on_segment)
