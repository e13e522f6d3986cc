"""The pack's own modules, as ComfyUI loads them, for tests and benchmarks (one copy of each module)."""
from __future__ import annotations

import dataclasses


def run_long_video(comfy, node_inputs: dict, on_segment=None):
    """The long-video loop (`atomo_host.continuation.run_long_video`) called with AtomoVideoLongVideo's own input
    names, plus a segment callback (which the node does not expose)."""
    host = comfy.pack_module("atomo_host.continuation")
    sampling = comfy.pack_module("atomo_host.sampling")
    rest = dict(node_inputs)
    positional = [rest.pop(name) for name in ("model", "positive", "negative", "vae")]

    def take(cls, **fixed):
        names = {f.name for f in dataclasses.fields(cls)} - set(fixed)
        return cls(**fixed, **{n: rest.pop(n) for n in list(rest) if n in names})

    settings = (take(host.LongVideo), take(sampling.SamplingSettings, denoise=1.0), take(host.GivenFrames))
    if rest:
        raise TypeError(f"not inputs of AtomoVideoLongVideo: {sorted(rest)}")
    return host.run_long_video(*positional, *settings, on_segment=on_segment)
