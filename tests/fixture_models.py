"""Small models in the real key layouts, with random values, for host tests.

The UNet is SD1.5-detected by ComfyUI (320 channels, context 768, non-linear proj) but has only two levels
(`channel_mult [1, 1]`, one ResBlock each), so a step takes a fraction of a second on a CPU. The text encoder is
a full-size CLIP-L with random values (its config is fixed by the host). The VAE is the real TAESD from
`../shared/models` when present, else a random TAESD of the same shape.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from pack import core, module

CHECKPOINT = "atomo_tiny_sd15.safetensors"
INPAINT_UNET = "atomo_tiny_sd15_inpaint_unet.safetensors"

# The same tiny SD1.5-detected UNet that `python -m atomo_train tiny-base` writes for users' smoke runs.
TINY_UNET_CONFIG = module("atomo_train.tiny_base", "TINY_UNET")


def fill_random_(state_dict: dict, seed: int, std: float = 0.02) -> dict:
    """Deterministic, well-scaled random values: N(0, std) weights, zero biases, unit norms.

    Convolution and linear weights are scaled by 1/sqrt(fan_in) so activations stay O(1) through deep stacks.
    """
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k in sorted(state_dict):
        t = state_dict[k]
        if not torch.is_floating_point(t):
            out[k] = t.clone()
            continue
        if "norm" in k and k.endswith("weight") and t.ndim == 1:
            v = torch.ones(t.shape)
        elif k.endswith("bias"):
            v = torch.zeros(t.shape)
        elif t.ndim >= 2 and ("weight" in k):
            fan_in = t[0].numel()
            v = torch.randn(t.shape, generator=g) / math.sqrt(fan_in)
        else:
            v = torch.randn(t.shape, generator=g) * std
        out[k] = v.to(t.dtype)
    return out


def tiny_unet_state_dict(in_channels: int = 4, seed: int = 0) -> dict:
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    cfg = dict(TINY_UNET_CONFIG, in_channels=in_channels)
    with torch.device("meta"):
        unet = UNetModel(**cfg, operations=comfy.ops.disable_weight_init)
    shapes = {k: torch.empty(v.shape, dtype=torch.float32) for k, v in unet.state_dict().items()}
    return fill_random_(shapes, seed)


def random_clip_l_state_dict(seed: int = 1) -> dict:
    import comfy.sd1_clip

    with torch.device("meta"):
        clip = comfy.sd1_clip.SDClipModel(device="meta")
    shapes = {k: torch.empty(v.shape, dtype=torch.float32) for k, v in clip.state_dict().items()
              if not k.endswith("position_ids")}
    sd = fill_random_(shapes, seed)
    return sd


def taesd_state_dict(shared_models: Path, seed: int = 2) -> dict:
    enc, dec = shared_models / "taesd_encoder.safetensors", shared_models / "taesd_decoder.safetensors"
    sd = {}
    if enc.is_file() and dec.is_file():
        for k, v in load_file(str(enc)).items():
            sd[f"taesd_encoder.{k}"] = v.float()
        for k, v in load_file(str(dec)).items():
            sd[f"taesd_decoder.{k}"] = v.float()
    else:  # same shapes as the real TAESD, random values
        import comfy.taesd.taesd as taesd

        with torch.device("meta"):
            m = taesd.TAESD()
        shapes = {k: torch.empty(v.shape) for k, v in m.state_dict().items()
                  if k.startswith(("taesd_encoder.", "taesd_decoder."))}
        sd = fill_random_(shapes, seed)
    sd["vae_scale"] = torch.tensor(0.18215)
    sd["vae_shift"] = torch.tensor(0.0)
    return sd


def write_all(comfy, shared_models: Path) -> dict:
    """Writes the fixture files into the host's model folders and returns their names."""
    models = comfy.models_dir
    ckpt = {f"model.diffusion_model.{k}": v.half() for k, v in tiny_unet_state_dict(4).items()}
    ckpt.update({f"cond_stage_model.{k}": v.half() for k, v in random_clip_l_state_dict().items()})
    ckpt.update({f"first_stage_model.{k}": v for k, v in taesd_state_dict(shared_models).items()})
    save_file(ckpt, str(models / "checkpoints" / CHECKPOINT))
    inpaint = {k: v.half() for k, v in tiny_unet_state_dict(9, seed=3).items()}
    save_file(inpaint, str(models / "diffusion_models" / INPAINT_UNET))
    return {"checkpoint": CHECKPOINT, "inpaint_unet": INPAINT_UNET}


ATOMO_FRESH = "atomo_fresh_eps.safetensors"      # identity layers, eps: must reproduce the base model
ATOMO_RANDOM = "atomo_random_eps.safetensors"    # non-zero temporal outputs and input channels
ATOMO_FRESH_V = "atomo_fresh_v.safetensors"      # identity layers, v-prediction + zero terminal SNR


def randomize_outputs_(weights, seed: int = 5, scale: float = 0.05) -> None:
    """Give every layer (and the extra input channels) non-zero values so frames really mix."""
    g = torch.Generator().manual_seed(seed)
    for sd in weights.temporal.values():
        for k, v in sd.items():
            if torch.is_floating_point(v) and not k.endswith("pe"):
                fan_in = v[0].numel() if v.ndim >= 2 else 1
                sd[k] = torch.randn(v.shape, generator=g) * (scale if v.ndim < 2 else 1.0 / math.sqrt(fan_in))
    weights.conv_in_extra = torch.randn(weights.conv_in_extra.shape, generator=g) * scale


def write_atomovideo_fixtures(comfy, model) -> dict:
    """AtomoVideo files whose sites are read from the host's own UNet (not hard-coded)."""
    atomovideo_sites = core("unet_sites", "atomovideo_sites")
    fresh_weights, save_atomovideo = core("weight_format", "fresh_weights", "save_atomovideo")

    glue = comfy.pack_module("atomo_host.inflation")
    sites = atomovideo_sites(glue.host_layout(model.get_model_object("diffusion_model")))
    folder = comfy.models_dir / "atomovideo"
    save_atomovideo(folder / ATOMO_FRESH, fresh_weights(sites, prediction="eps", zero_terminal_snr=False))
    rnd = fresh_weights(sites, prediction="eps", zero_terminal_snr=False)
    randomize_outputs_(rnd)
    save_atomovideo(folder / ATOMO_RANDOM, rnd)
    save_atomovideo(folder / ATOMO_FRESH_V, fresh_weights(sites))
    return {"fresh": ATOMO_FRESH, "random": ATOMO_RANDOM, "fresh_v": ATOMO_FRESH_V, "sites": sites}


def loader_prompt(tiny_models: dict, weights: str) -> dict:
    """Nodes "1"-"3" of an API prompt: the tiny checkpoint, AtomoVideoLoader with `weights` (schedule from the
    weights) and the text "a boat"; tests add the nodes they check."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": tiny_models["checkpoint"]}},
        "2": {"class_type": "AtomoVideoLoader", "inputs": {"model": ["1", 0], "weights": weights,
                                                           "noise_schedule": "from weights"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a boat"}},
    }
