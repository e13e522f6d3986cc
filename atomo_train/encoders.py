"""The data cache's encoders, built from the user's checkpoint through ComfyUI (VAE, CLIP, CLIP vision).

Latents are in model space (the checkpoint's latent format applied, x0.18215 for SD1.5), i.e. exactly what
the UNet is trained on and what `process_latent_in` gives at sampling time.
"""
from __future__ import annotations

import torch


def vae_encoder(vae, latent_format):
    @torch.no_grad()
    def vae_encode(frames: torch.Tensor) -> torch.Tensor:
        """frames [F,3,H,W] in [0,1] -> model-space latents [F,4,H/8,W/8]."""
        pixels = frames.float().permute(0, 2, 3, 1).contiguous()
        return latent_format.process_in(vae.encode(pixels).float()).cpu()
    return vae_encode


def zero_text_encoder(context_dim: int):
    """A base without a text encoder (the demo's) is conditioned on one zero token."""
    def text_encode(captions: list[str]) -> torch.Tensor:
        return torch.zeros(len(captions), 1, context_dim)
    return text_encode


def text_encoder(clip):
    @torch.no_grad()
    def text_encode(captions: list[str]) -> torch.Tensor:
        """captions -> token embeddings [N,77,768] (what CLIPTextEncode gives the UNet)."""
        out = [clip.encode_from_tokens(clip.tokenize(c)).float().cpu() for c in captions]
        return torch.cat(out)
    return text_encode


def image_encoder(clip_vision, which: str = "penultimate_hidden_states"):
    """`which`: the CLIP-vision output the image projection reads ("image_embeds" for IP-Adapter base,
    "penultimate_hidden_states" for plus / full-face), computed as AtomoVideoCLIPVisionInject computes it."""
    from ..atomo_host.image_tokens import clip_features

    @torch.no_grad()
    def image_encode(frames: torch.Tensor) -> torch.Tensor:
        """frames [F,3,H,W] -> CLIP-vision features [F,T,D] of every candidate conditioning frame (T = 1 for the
        pooled image_embeds)."""
        out = clip_features(clip_vision, frames.float().permute(0, 2, 3, 1).contiguous(), which)
        return (out.unsqueeze(1) if out.dim() == 2 else out).float().cpu()
    return image_encode


def build_encoders(base, clip_vision=None, which: str = "penultimate_hidden_states"):
    """The data cache's `Encoders` from a loaded checkpoint (`model_setup.Base` with clip and vae)."""
    from .data.cache import Encoders

    latent_format = base.patcher.get_model_object("latent_format")
    if base.clip is None:
        text = zero_text_encoder(base.patcher.model.model_config.unet_config["context_dim"])
    else:
        text = text_encoder(base.clip)
    return Encoders(vae_encode=vae_encoder(base.vae, latent_format), text_encode=text,
                    image_encode=image_encoder(clip_vision, which) if clip_vision is not None else None)
