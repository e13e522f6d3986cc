"""SD1.5-family UNets narrower than SD1.5 (the pack's demo base), loaded through the host's own `SD15` class.

ComfyUI's detection recognises SD1.5 by 320 channels and a 768-wide context, so a 64-channel UNet ends in "could
not detect model type". Prepending a model class to the host's list would patch it globally; instead the file
names its UNet config in its safetensors metadata and `load_small_base` builds `comfy.supported_models.SD15`
with it, as `load_diffusion_model_state_dict` does after detection. Every node then treats it as SD1.5.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

import comfy.model_management
import comfy.model_patcher
import comfy.supported_models

from ..atomo_core.errors import AtomoVideoError

CONFIG_KEY = "atomo_unet_config"
PREFIX = "model.diffusion_model."
# The UNet config keys a file may set, with the values SD1.5 detection would require left out on purpose:
# channels and context width are what make the model small.
ALLOWED = {"use_checkpoint", "image_size", "out_channels", "use_spatial_transformer", "legacy", "adm_in_channels",
           "in_channels", "model_channels", "num_res_blocks", "transformer_depth", "channel_mult",
           "transformer_depth_middle", "use_linear_in_transformer", "context_dim", "num_heads",
           "transformer_depth_output", "use_temporal_attention", "use_temporal_resblock"}


def file_config(path: str | Path) -> dict | None:
    """The UNet config a small-base file declares, or None for any other file."""
    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as f:
        text = (f.metadata() or {}).get(CONFIG_KEY)
    if text is None:
        return None
    config = json.loads(text)
    unknown = set(config) - ALLOWED
    if unknown or not isinstance(config.get("model_channels"), int):
        raise AtomoVideoError("ckpt_name", f"{path.name} declares an unsupported UNet config ({sorted(unknown)}); "
                              "it was not written by this pack")
    return config


def build_model(unet_config: dict, dtype=torch.float32):
    """A ComfyUI SD1.5 `BaseModel` with this UNet config (random weights)."""
    config = comfy.supported_models.SD15(dict(unet_config))
    config.set_inference_dtype(dtype, None)
    return config.get_model({}, "")


def load_small_base(path: str | Path, dtype=torch.float32):
    """ModelPatcher of a small-base file (weights `model.diffusion_model.*`)."""
    config = file_config(path)
    if config is None:
        raise AtomoVideoError("ckpt_name", f"{Path(path).name} is not a small SD1.5-family base written by this "
                              "pack (no '" + CONFIG_KEY + "' metadata); choose one of the bundled demo bases, or "
                              "regenerate it with `python -m atomo_demo.train_base`")
    model = build_model(config, dtype)
    with safe_open(str(path), framework="pt") as f:
        sd = {k: f.get_tensor(k) for k in f.keys() if k.startswith(PREFIX)}
    try:
        model.diffusion_model.load_state_dict({k[len(PREFIX):]: v.to(dtype) for k, v in sd.items()})
    except RuntimeError as e:
        raise AtomoVideoError("ckpt_name", f"{Path(path).name} does not match its declared UNet config (the file "
                              "is damaged or was edited); restore it (`git checkout` of atomo_demo/weights/) or "
                              "regenerate it with `python -m atomo_demo.train_base`") from None
    return comfy.model_patcher.ModelPatcher(model, load_device=comfy.model_management.get_torch_device(),
                                            offload_device=comfy.model_management.unet_offload_device())


def save_small_base(path: str | Path, diffusion_model, unet_config: dict, metadata: dict | None = None,
                    dtype=torch.float16) -> Path:
    """Write the UNet's weights with its config in the metadata (atomically: a failed write leaves no file)."""
    unknown = set(unet_config) - ALLOWED
    if unknown:
        raise ValueError(f"unsupported UNet config keys {sorted(unknown)}")
    sd = {PREFIX + k: v.detach().to(dtype).contiguous().cpu() for k, v in diffusion_model.state_dict().items()}
    meta = {CONFIG_KEY: json.dumps(unet_config, sort_keys=True), "format": "pt"}
    meta.update({k: str(v) for k, v in (metadata or {}).items()})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(sd, str(tmp), metadata=meta)
    tmp.replace(path)
    return path
