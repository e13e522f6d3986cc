"""The demo's models, shipped inside the pack (issue 13): a small base, its VAE and empty conditioning.

The small base is not detectable as SD1.5 (`small_base`), so no core loader opens it; this is the one place that
does, for the AtomoVideo Demo Model node. Everything after it is the pack's ordinary nodes: the demo AtomoVideo file
is found by AtomoVideo Loader through the `atomovideo` model folder (`model_files.BUNDLED_FOLDERS`).

The base is unconditional (trained on one zero context token), so positive and negative are the same empty
conditioning: a zero token has zero cross-attention keys and values (SD1.5's `to_k`/`to_v` have no bias).
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

import comfy.latent_formats
import comfy.sd

from ..atomo_core.errors import AtomoVideoError
from . import small_base

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "atomo_demo" / "weights"
DEFAULT_BASE = "demo_unet.safetensors"
VAE_FILE = "atomo_demo_vae.safetensors"
ATOMOVIDEO_FILE = "demo_atomovideo.safetensors"
ATOMOVIDEO_DIR = WEIGHTS_DIR / "atomovideo"

# bundled file -> the command (from the pack's folder) that regenerates it; its output goes to atomo_demo/weights/
REGENERATE = {
    DEFAULT_BASE: "python -m atomo_demo.train_base OUT --vae atomo_demo/weights, then copy OUT/weights/"
                  + DEFAULT_BASE,
    VAE_FILE: "python -m atomo_demo.train_vae OUT, then copy OUT/weights/" + VAE_FILE,
    ATOMOVIDEO_FILE: "python -m atomo_train --config atomo_demo/configs/demo_video.toml, then copy the weights "
                     "file it writes to atomo_demo/weights/atomovideo/" + ATOMOVIDEO_FILE,
}


def bundled_bases() -> list[str]:
    """The small-base files in `atomo_demo/weights`, the default first (listed even when missing, so the node's
    choice is never empty and running it says what is missing)."""
    names = [DEFAULT_BASE]
    if WEIGHTS_DIR.is_dir():
        for path in sorted(WEIGHTS_DIR.glob("*.safetensors")):
            if path.name not in names and _is_small_base(path):
                names.append(path.name)
    return names


def _is_small_base(path: Path) -> bool:
    try:
        return small_base.file_config(path) is not None
    except (AtomoVideoError, OSError, ValueError):
        return False


def bundled_file(name: str, field: str | None, folder: Path | None = None) -> Path:
    """The path of a file the pack ships in `atomo_demo/weights` (or `folder`), or an error naming it and how to
    get it back."""
    path = (folder or WEIGHTS_DIR) / name
    if path.is_file():
        return path
    how = REGENERATE.get(name, f"python -m atomo_demo.train_base OUT --vae atomo_demo/weights (for {name})")
    raise AtomoVideoError(field, f"the pack's demo file {path} is missing. It ships with the pack: restore it with "
                                 "`git checkout -- atomo_demo/weights` in the pack's folder (or reinstall the "
                                 f"pack), or regenerate it: {how}")


def check_bundled_files() -> None:
    """Every file the demo workflow needs is in the pack (before a run, so a missing one is named up front)."""
    bundled_file(DEFAULT_BASE, None)
    bundled_file(VAE_FILE, None)
    bundled_file(ATOMOVIDEO_FILE, None, ATOMOVIDEO_DIR)

# Latent2RGB preview colours of the demo VAE (`python -m atomo_demo preview-colors` prints them): rows are the 4
# latent channels in the sampler's space, columns R, G, B; SD1.5's own rows would draw the demo's latents in false
# colours.
DEMO_LATENT_RGB = [
    [0.0926, 0.3788, 0.5283],
    [0.3701, -0.1709, -0.0373],
    [0.4751, 0.3779, 0.0548],
    [0.2130, -0.1515, 0.3385],
]
DEMO_LATENT_RGB_BIAS = [0.1373, 0.0466, -0.0339]


class DemoLatentFormat(comfy.latent_formats.SD15):
    """SD1.5's latent format (scale factor included) with the demo VAE's preview colours; no TAESD preview
    decoder, since SD1.5's TAESD does not decode the demo's latents."""

    def __init__(self):
        super().__init__()
        self.latent_rgb_factors = DEMO_LATENT_RGB
        self.latent_rgb_factors_bias = DEMO_LATENT_RGB_BIAS
        self.taesd_decoder_name = None


def empty_conditioning(context_dim: int) -> list:
    """CONDITIONING of one zero context token: what the unconditional demo base was trained on."""
    return [[torch.zeros(1, 1, context_dim), {}]]


def load_vae():
    """The demo VAE (TAESD layout with the SD1.5 latent scale), as VAELoader would build it."""
    return comfy.sd.VAE(sd=load_file(str(bundled_file(VAE_FILE, None))))


def load_demo(base: str = DEFAULT_BASE):
    """(MODEL, VAE, positive, negative) of the pack's demo."""
    if base not in bundled_bases():
        raise AtomoVideoError("base", f"'{base}' is not one of the pack's demo bases {bundled_bases()} "
                                      f"(files in {WEIGHTS_DIR} with an '{small_base.CONFIG_KEY}' config)")
    try:
        model = small_base.load_small_base(bundled_file(base, "base"))
    except AtomoVideoError as e:
        raise AtomoVideoError("base", e.message) from e
    model.model.latent_format = DemoLatentFormat()  # the pack's own model object, built just above
    context_dim = model.model.model_config.unet_config["context_dim"]
    vae = load_vae()
    return model, vae, empty_conditioning(context_dim), empty_conditioning(context_dim)
