"""A tiny random checkpoint that ComfyUI detects as SD1.5, for smoke runs of the trainer (no download).

The UNet has SD1.5's widths (320 channels, 768-wide text context: what SD1.5 detection checks) but only two
levels with one ResBlock each; the text encoder is a CLIP-L of random values (its shape is fixed by the host);
the VAE is a random TAESD. It trains in minutes on a CPU; its videos are noise, it only proves the mechanics.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from safetensors.torch import save_file

TINY_UNET = {
    "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
    "legacy": False, "adm_in_channels": None, "in_channels": 4, "model_channels": 320,
    "num_res_blocks": [1, 1], "transformer_depth": [1, 1], "channel_mult": [1, 1],
    "transformer_depth_middle": 1, "use_linear_in_transformer": False, "context_dim": 768, "num_heads": 8,
    "transformer_depth_output": [1, 1, 1, 1], "use_temporal_attention": False, "use_temporal_resblock": False,
}


def _random(shapes: dict, seed: int) -> dict:
    """N(0, 1/fan_in) weights, zero biases, unit norm weights: activations stay O(1)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k in sorted(shapes):
        shape = shapes[k]
        if "norm" in k and k.endswith("weight") and len(shape) == 1:
            out[k] = torch.ones(shape)
        elif k.endswith("bias"):
            out[k] = torch.zeros(shape)
        elif len(shape) >= 2 and "weight" in k:
            out[k] = torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))
        else:
            out[k] = torch.randn(shape, generator=g) * 0.02
    return out


def _shapes(module) -> dict:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()
            if torch.is_floating_point(v) and not k.endswith("position_ids")}


def write_tiny_base(path: Path, seed: int = 0) -> Path:
    import comfy.ops
    import comfy.sd1_clip
    import comfy.taesd.taesd as taesd
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    with torch.device("meta"):
        unet = UNetModel(**TINY_UNET, operations=comfy.ops.disable_weight_init)
        clip = comfy.sd1_clip.SDClipModel(device="meta")
        vae = taesd.TAESD()
    sd = {f"model.diffusion_model.{k}": v.half() for k, v in _random(_shapes(unet), seed).items()}
    sd.update({f"cond_stage_model.{k}": v.half() for k, v in _random(_shapes(clip), seed + 1).items()})
    vae_shapes = {k: s for k, s in _shapes(vae).items() if k.startswith(("taesd_encoder.", "taesd_decoder."))}
    sd.update({f"first_stage_model.{k}": v for k, v in _random(vae_shapes, seed + 2).items()})
    sd["first_stage_model.vae_scale"] = torch.tensor(0.18215)
    sd["first_stage_model.vae_shift"] = torch.tensor(0.0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(sd, str(tmp))
    tmp.replace(path)
    return path
