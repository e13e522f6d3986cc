"""Shared pieces of the trainer's image-projection host tests: a tiny real CLIP-vision model and synthetic
IP-Adapter SD1.5 files fitted to the tiny checkpoint's cross-attention sites."""
from __future__ import annotations

import json

import torch
from safetensors.torch import save_file

from test_clip_injection_host import TINY_CLIP
from test_image_projection import base_state_dict, plus_state_dict


def tiny_clip_vision(folder):
    """A small real `ClipVisionModel` (hidden 64, projection 32) with random values, and its weights on disk
    (for `model.clip_vision`; `comfy.clip_vision.load` detects only full-size models, so tests pass the object)."""
    import comfy.clip_vision as cv
    import fixture_models

    cfg = folder / "tiny_clip_vision.json"
    cfg.write_text(json.dumps(TINY_CLIP))
    model = cv.ClipVisionModel(str(cfg))
    shapes = {k: torch.empty(v.shape) for k, v in model.get_sd().items()}
    missing, unexpected = model.load_sd(fixture_models.fill_random_(shapes, seed=21))
    assert not missing and not unexpected
    path = folder / "tiny_clip_vision.safetensors"
    save_file({k: v.contiguous() for k, v in model.get_sd().items()}, str(path))
    return model, path


def site_widths(comfy, patcher) -> list:
    glue = comfy.pack_module("atomo_host.decoupled_attention")
    return [s.inner for s in glue.cross_attention_sites(patcher.get_model_object("diffusion_model"))]


def write_ip_files(comfy, widths) -> dict:
    """{kind: (file name in models/ipadapter, path)}; to_k_ip/to_v_ip scaled up so the image attention visibly
    changes the tiny model's output."""
    folder = comfy.models_dir / "ipadapter"
    folder.mkdir(parents=True, exist_ok=True)
    files = {"base": ("train_ip_base.safetensors", base_state_dict(widths, clip_dim=32, seed=3)),
             "plus": ("train_ip_plus.safetensors", plus_state_dict(widths, clip_dim=64, dim=64, depth=1, heads=1,
                                                                  seed=4))}
    out = {}
    for kind, (name, sd) in files.items():
        sd = {k: (v * 20.0 if "_ip." in k else v).contiguous() for k, v in sd.items()}
        save_file(sd, str(folder / name))
        out[kind] = (name, folder / name)
    return out
