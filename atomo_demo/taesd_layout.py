"""TAESD's encoder and decoder in plain PyTorch, module for module, so trained weights load in ComfyUI.

ComfyUI builds the same `nn.Sequential` stacks in `comfy/taesd/taesd.py` and loads `taesd_encoder.*` /
`taesd_decoder.*` files from `models/vae_approx` (VAELoader's "taesd", latent scale 0.18215, shift 0) or a single
file holding both prefixes plus `vae_scale`/`vae_shift` from `models/vae`. Parameter names and shapes are the
contract; the tests load our files through the real VAELoader.

Conventions (ComfyUI's TAESD wrapper): the encoder sees RGB in [0, 1] and its output is the latent the diffusion
model sees (ComfyUI's LATENT is that divided by vae_scale); the decoder returns RGB in [0, 1].
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

LATENT_CHANNELS = 4
SD15_VAE_SCALE = 0.18215  # what VAELoader sets for the name "taesd"


def _conv(n_in: int, n_out: int, **kwargs) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)


class Clamp(nn.Module):
    def forward(self, x):
        return torch.tanh(x / 3) * 3


class Block(nn.Module):
    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.conv = nn.Sequential(_conv(n_in, n_out), nn.ReLU(), _conv(n_out, n_out), nn.ReLU(), _conv(n_out, n_out))
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
        self.fuse = nn.ReLU()

    def forward(self, x):
        return self.fuse(self.conv(x) + self.skip(x))


def encoder(latent_channels: int = LATENT_CHANNELS) -> nn.Sequential:
    return nn.Sequential(
        _conv(3, 64), Block(64, 64),
        _conv(64, 64, stride=2, bias=False), Block(64, 64), Block(64, 64), Block(64, 64),
        _conv(64, 64, stride=2, bias=False), Block(64, 64), Block(64, 64), Block(64, 64),
        _conv(64, 64, stride=2, bias=False), Block(64, 64), Block(64, 64), Block(64, 64),
        _conv(64, latent_channels),
    )


def decoder(latent_channels: int = LATENT_CHANNELS) -> nn.Sequential:
    return nn.Sequential(
        Clamp(), _conv(latent_channels, 64), nn.ReLU(),
        Block(64, 64), Block(64, 64), Block(64, 64), nn.Upsample(scale_factor=2), _conv(64, 64, bias=False),
        Block(64, 64), Block(64, 64), Block(64, 64), nn.Upsample(scale_factor=2), _conv(64, 64, bias=False),
        Block(64, 64), Block(64, 64), Block(64, 64), nn.Upsample(scale_factor=2), _conv(64, 64, bias=False),
        Block(64, 64), _conv(64, 3),
    )


class TinyAutoencoder(nn.Module):
    """Encoder + decoder pair; `encoder`/`decoder` state dicts are exactly TAESD's files."""

    def __init__(self, latent_channels: int = LATENT_CHANNELS):
        super().__init__()
        self.encoder = encoder(latent_channels)
        self.decoder = decoder(latent_channels)

    def init_for_training(self):
        """He init with every residual branch zeroed (blocks start as identity) and the output at mid-grey.

        The layout has no normalisation; with PyTorch's default init the 20 stacked blocks start with shrinking
        signals; from this start a run leaves the mean-colour plateau sooner (measured on world frames).
        """
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, Block):
                nn.init.zeros_(m.conv[4].weight)
                nn.init.zeros_(m.conv[4].bias)
        nn.init.normal_(self.encoder[-1].weight, std=(1.0 / (64 * 9)) ** 0.5)
        nn.init.normal_(self.decoder[-1].weight, std=1e-3)
        nn.init.constant_(self.decoder[-1].bias, 0.5)
        return self

    def forward(self, rgb01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(rgb01)
        return z, self.decoder(z)


def save_taesd_files(model: TinyAutoencoder, out_dir: Path, dtype=torch.float16,
                     vae_scale: float = SD15_VAE_SCALE) -> dict[str, Path]:
    """Writes the VAELoader files: `taesd_encoder/decoder.safetensors` (for models/vae_approx) and one combined
    `atomo_demo_vae.safetensors` with both prefixes and the latent scale (for models/vae)."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    enc = {k: v.detach().to(dtype).contiguous() for k, v in model.encoder.state_dict().items()}
    dec = {k: v.detach().to(dtype).contiguous() for k, v in model.decoder.state_dict().items()}
    paths = {"encoder": out_dir / "taesd_encoder.safetensors", "decoder": out_dir / "taesd_decoder.safetensors",
             "combined": out_dir / "atomo_demo_vae.safetensors"}
    meta = {"format": "pt", "layout": "taesd",
            "source": "atomo_demo.train_vae (trained from scratch on atomo_demo.world)"}
    save_file(enc, str(paths["encoder"]), metadata=meta)
    save_file(dec, str(paths["decoder"]), metadata=meta)
    combined = {f"taesd_encoder.{k}": v for k, v in enc.items()}
    combined.update({f"taesd_decoder.{k}": v for k, v in dec.items()})
    combined["vae_scale"] = torch.tensor(vae_scale, dtype=torch.float32)
    combined["vae_shift"] = torch.tensor(0.0, dtype=torch.float32)
    save_file(combined, str(paths["combined"]), metadata=meta)
    return paths


def load_taesd_files(encoder_path: Path, decoder_path: Path) -> TinyAutoencoder:
    from safetensors.torch import load_file

    m = TinyAutoencoder()
    m.encoder.load_state_dict({k: v.float() for k, v in load_file(str(encoder_path)).items()})
    m.decoder.load_state_dict({k: v.float() for k, v in load_file(str(decoder_path)).items()})
    return m


def load_combined_file(path: Path) -> TinyAutoencoder:
    """The combined `atomo_demo_vae.safetensors` (both prefixes; the only VAE file the pack ships)."""
    from safetensors.torch import load_file

    sd = load_file(str(path))
    m = TinyAutoencoder()
    for name, part in (("taesd_encoder.", m.encoder), ("taesd_decoder.", m.decoder)):
        part.load_state_dict({k[len(name):]: v.float() for k, v in sd.items() if k.startswith(name)})
    return m
