"""The trainer's model: the user's SD1.5 UNet inflated by the loader's own code, with trainable new layers.

With its two parts `image_projection.py` (the trainable IP-Adapter projection and its attn2 patches) and
`block_checkpointing.py` (checkpointing of the frozen UNet blocks), the only trainer module that talks to the
pack's host glue (`atomo_host`, weight readers), so switching the glue package means editing these files (and
`validation.py` for sampling).

- The base checkpoint is loaded by ComfyUI, checked to be SD1.5 and frozen (`requires_grad` off; its values
  are never written: the new layers reach the UNet only through object patches, undone by `detach()`).
- Temporal layers are inserted by `inflate`, the AtomoVideoLoader's function, so training and inference build
  the same UNet. The layers themselves are ordinary modules, trained in place.
- The extra `conv_in` channels: the loader widens `conv_in` with a weight patch (no gradient path), so here
  `input_blocks.0.0` is object-patched with a convolution whose weight is cat(frozen base, trainable extra).
  The written file stores only the extra channels, which the loader pads onto the user's `conv_in` again.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.utils.checkpoint
import torch.nn.functional as F
from torch import nn

import comfy.model_management
import comfy.sd
import comfy.utils
import folder_paths

from ..atomo_core.errors import AtomoVideoError
from ..atomo_core.temporal_layers import TemporalLayer, set_positional_length
from ..atomo_core.unet_sites import CONV, atomovideo_sites
from ..atomo_core.weight_files import load_temporal_weights
from ..atomo_core.weight_format import AtomoVideoMetadata, AtomoVideoWeights, fresh_weights
from ..atomo_host.inflation import host_layout, inflate
from ..atomo_host import small_base
from ..atomo_host.model_family import check_sd15_base
from .block_checkpointing import CheckpointedBlock, checkpointed_block_handler, wrap_blocks
from .errors import ConfigError
from .image_projection import TOKENS_KEY, ImageAdapter, attn2_patches

WHO = "atomo_train"
CONV_IN = "diffusion_model.input_blocks.0.0"
MOTION_FORMATS = ("animatediff_v1", "animatediff_v2", "animatediff_v3", "animatelcm", "pia")


@dataclass
class Base:
    """The loaded checkpoint: ModelPatcher, and CLIP / VAE when asked for."""
    patcher: object
    clip: object = None
    vae: object = None


def compute_device() -> torch.device:
    return comfy.model_management.get_torch_device()


def load_base(path: Path, *, clip: bool = False, vae: bool = False, vae_path: Path | None = None) -> Base:
    """Load the user's checkpoint through ComfyUI (UNet in float32: it is frozen, autocast does the rest).

    A small SD1.5-family base written by this pack (the demo's) loads through `small_base`; it has no text
    encoder (its context is one zero token) and its VAE comes from `model.vae`."""
    if not Path(path).is_file():
        raise ConfigError("model.checkpoint", f"file not found: {path}")
    try:
        small = small_base.file_config(path)
    except AtomoVideoError as e:
        raise ConfigError("model.checkpoint", e.message) from None
    if small is not None:
        out = (small_base.load_small_base(path), None, None)
    else:
        out = _load_checkpoint(path, clip, vae and vae_path is None)
    try:
        check_sd15_base(out[0], field="model.checkpoint")
    except AtomoVideoError as e:
        raise ConfigError("model.checkpoint", e.message) from None
    out[0].model.diffusion_model.requires_grad_(False)
    vae_model = out[2]
    if vae_path is not None:
        vae_model = load_vae(vae_path)
    if vae and vae_model is None:
        raise ConfigError("model.vae", f"{Path(path).name} has no VAE; set model.vae to a VAE file")
    return Base(out[0], out[1], vae_model)


def _load_checkpoint(path: Path, clip: bool, vae: bool):
    try:
        return comfy.sd.load_checkpoint_guess_config(
            str(path), output_vae=vae, output_clip=clip,
            embedding_directory=folder_paths.get_folder_paths("embeddings"),
            model_options={"dtype": torch.float32})
    except RuntimeError as e:
        raise ConfigError("model.checkpoint", f"{Path(path).name} is not a checkpoint ComfyUI can load "
                          f"({str(e).splitlines()[0]}); give an SD1.5 .safetensors checkpoint") from None


def load_vae(path: Path):
    """A VAE file as ComfyUI's VAELoader reads it (SD VAE or TAESD layout)."""
    try:
        vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(str(path), safe_load=True))
    except Exception as e:  # the host raises assorted errors for files that are not a VAE
        raise ConfigError("model.vae", f"{Path(path).name} is not a VAE ComfyUI can load ({e})") from None
    if vae.first_stage_model is None or getattr(vae, "latent_channels", 4) != 4:
        raise ConfigError("model.vae", f"{Path(path).name} is not a 4-channel SD1.5 VAE")
    return vae


def unet_layout(patcher) -> dict:
    return host_layout(patcher.get_model_object("diffusion_model"))


# --------------------------------------------------------------------------------------------------------------
# Initial weights: fresh identity layers, or public files
# --------------------------------------------------------------------------------------------------------------
def training_metadata(sites, max_frames: int, temporal_conv: bool, heads: int, prediction: str = "v",
                      **arch) -> AtomoVideoMetadata:
    """What a trained file declares: v-prediction on zero terminal SNR (or eps on SD1.5's schedule, the paper's
    comparison), the AtomoVideo input layout."""
    meta = AtomoVideoMetadata(sites=[s.as_list() for s in sites], max_frames=max_frames, temporal_conv=temporal_conv,
                              heads=heads, prediction=prediction, zero_terminal_snr=prediction == "v",
                              source_format="atomovideo", beta_schedule="scaled_linear",
                              spatial_groupnorm="per_frame", image_on_all_frames=False, **arch)
    meta.validate()
    return meta


def _read_public(path: Path, key: str, layout: dict) -> AtomoVideoWeights:
    try:
        return load_temporal_weights(path, layout=layout)
    except AtomoVideoError as e:
        raise ConfigError(key, f"{e}. Give a file of the kind this key expects.") from None


def initial_weights(model_cfg, init_cfg, layout: dict, seed: int = 0) -> AtomoVideoWeights:
    """Fresh AtomoVideo layers (identity), with the temporal attention from an AnimateDiff motion module and the
    extra conv_in channels from PIA when `[init]` names those files.

    The random parts (the attention projections before their zero output) are drawn from `seed`, so every
    process and every run with the same config starts from the same values."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _initial_weights(model_cfg, init_cfg, layout)


def _initial_weights(model_cfg, init_cfg, layout: dict) -> AtomoVideoWeights:
    conv_sites = atomovideo_sites(layout, temporal_conv=model_cfg.temporal_conv)
    conv_sites = [s for s in conv_sites if s.kind == CONV]
    max_frames = model_cfg.max_frames
    if init_cfg.motion_module is None:
        sites = atomovideo_sites(layout, temporal_conv=model_cfg.temporal_conv)
        meta = training_metadata(sites, max_frames, model_cfg.temporal_conv, model_cfg.heads, model_cfg.prediction)
        weights = fresh_weights(sites, **_meta_kwargs(meta))
    else:
        mm = _read_public(init_cfg.motion_module, "init.motion_module", layout)
        if mm.metadata.source_format not in MOTION_FORMATS:
            raise ConfigError("init.motion_module", f"{init_cfg.motion_module.name} is a "
                              f"'{mm.metadata.source_format}' file, not an AnimateDiff motion module (v1/v2/v3, "
                              "AnimateLCM, PIA)")
        attention_sites = mm.sites()
        taken = {s.name for s in attention_sites}
        sites = attention_sites + [s for s in conv_sites if s.name not in taken]
        meta = training_metadata(sites, max(max_frames, mm.metadata.max_frames), model_cfg.temporal_conv,
                                 mm.metadata.heads, model_cfg.prediction, attention_blocks=mm.metadata.attention_blocks,
                                 feed_forward=mm.metadata.feed_forward,
                                 attention_projections=mm.metadata.attention_projections)
        weights = fresh_weights(sites, **_meta_kwargs(meta))
        layers = weights.build_layers()
        public = mm.build_layers()
        for s in attention_sites:
            if meta.max_frames != mm.metadata.max_frames:  # the encoding is a fixed sinusoid: extend it
                set_positional_length(public[s.name], meta.max_frames)
            layers[s.name] = public[s.name]
        weights.temporal = {name: layer.state_dict() for name, layer in layers.items()}
    if init_cfg.pia is not None:
        pia = _read_public(init_cfg.pia, "init.pia", layout)
        if pia.metadata.source_format != "pia" or pia.conv_in_extra is None:
            raise ConfigError("init.pia", f"{init_cfg.pia.name} is not PIA (found a "
                              f"'{pia.metadata.source_format}' file without 9 input channels); give pia.ckpt")
        weights.conv_in_extra = pia.conv_in_extra.float().clone()
    return weights


def _meta_kwargs(meta: AtomoVideoMetadata) -> dict:
    d = dict(meta.__dict__)
    d.pop("sites")
    return d


# --------------------------------------------------------------------------------------------------------------
# The trainable model
# --------------------------------------------------------------------------------------------------------------
class WidenedConvIn(nn.Module):
    """conv_in with input channels cat(frozen base, trainable extra); the base conv is never written.

    The extra weight is read from its owner (the TrainableUNet) at every call, never kept: FSDP replaces the
    owner's Parameter object (sharded, then unsharded for the forward), and a kept reference would get no
    gradient."""

    def __init__(self, base_conv: nn.Module, owner: nn.Module):
        super().__init__()
        self.base = base_conv
        self.__dict__["_owner"] = owner  # not a submodule: the owner holds this module's trainable weight

    def forward(self, x):
        if self.base.weight.shape[1] != 4:
            raise RuntimeError(f"{WHO}: conv_in has {self.base.weight.shape[1]} input channels, expected the "
                               "checkpoint's 4; another model's patches are still applied (unload it first)")
        extra = self._owner.conv_in_extra
        weight = torch.cat([self.base.weight.to(extra.dtype), extra], dim=1)
        bias = None if self.base.bias is None else self.base.bias.to(extra.dtype)
        return F.conv2d(x, weight, bias, self.base.stride, self.base.padding)


def training_layer_handler(layer, x, emb, context, transformer_options, output_shape, time_context,
                           num_video_frames, image_only_indicator):
    """Like the loader's handler, but never casts the layer (its fp32 weights are the optimizer's)."""
    frames = transformer_options["atomo_frames"]
    if transformer_options.get("atomo_checkpoint") and torch.is_grad_enabled():
        return torch.utils.checkpoint.checkpoint(layer, x, frames, use_reentrant=False)
    return layer(x, frames)


def site_key(name: str) -> str:
    return name.replace(".", "__")


class TrainableUNet(nn.Module):
    """Holds exactly the trainable parameters (what DDP/FSDP wrap and `save_state` stores); its forward runs the
    whole inflated UNet, whose frozen base is kept outside the module tree."""

    def __init__(self, layers: dict, conv_in_extra: nn.Parameter, unet, frames: int, checkpointing: bool,
                 image_adapter: ImageAdapter | None = None):
        super().__init__()
        self.temporal = nn.ModuleDict({site_key(k): v for k, v in layers.items()})
        self.conv_in_extra = conv_in_extra
        self.image_adapter = image_adapter
        self.__dict__["_unet"] = unet  # not a submodule: the base is frozen and never synced or saved
        self.__dict__["_attn2"] = attn2_patches(image_adapter, unet) if image_adapter is not None else None
        self.frames = frames
        self.checkpointing = checkpointing

    def forward(self, x_t: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor,
                concat: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        """x_t [B*F,4,h,w] (frames contiguous per clip), timesteps [B*F], context [B*F,L,D], concat [B*F,5,h,w],
        image: CLIP features of each clip's conditioning frame [B,...] (zero where dropped), used when the model
        has an image adapter; returns the v prediction [B*F,4,h,w]."""
        patches = [(TemporalLayer, training_layer_handler)]
        if self.checkpointing:
            patches.append((CheckpointedBlock, checkpointed_block_handler))
        to = {"patches": {"forward_timestep_embed_patch": patches},
              "cond_or_uncond": [0] * (x_t.shape[0] // self.frames), "atomo_frames": self.frames,
              "atomo_checkpoint": self.checkpointing}
        if self.image_adapter is not None:
            if image is None:
                raise ValueError("the model has an image projection: pass the CLIP features of the given frame")
            tokens = self.image_adapter.tokens(image.to(x_t.device))
            to[TOKENS_KEY] = tokens.repeat_interleave(self.frames, dim=0)
            to["patches_replace"] = {"attn2": self._attn2}
        return self._unet(torch.cat([x_t, concat], dim=1), timesteps, context=context, transformer_options=to)


class TrainerModel:
    """The inflated clone of the base, the trainable module, and attach/detach of the object patches."""

    def __init__(self, base: Base, weights: AtomoVideoWeights, frames: int, checkpointing: bool = False,
                 image_adapter: ImageAdapter | None = None):
        self.base = base
        self.metadata = weights.metadata
        if frames > weights.metadata.max_frames:
            raise ConfigError("data.frames", f"{frames} frames exceed the positional encoding of "
                              f"{weights.metadata.max_frames}; raise model.max_frames")
        extra = weights.conv_in_extra
        self.patcher = inflate(base.patcher, replace(weights, conv_in_extra=None, image_proj=None), "training",
                               owner=WHO)
        unet = base.patcher.get_model_object("diffusion_model")
        layers = {}
        for key, seq in self.patcher.object_patches.items():
            block = key[len("diffusion_model."):]
            for child_name, child in seq.named_children():
                if isinstance(child, TemporalLayer):
                    layers[f"{block}.{child_name}"] = child
        missing = {s.name for s in weights.sites()} - set(layers)
        if missing:
            raise RuntimeError(f"inflation did not insert {sorted(missing)[:4]}")
        base_conv = unet.input_blocks[0][0]
        extra_param = nn.Parameter(extra.detach().float().clone() if extra is not None else
                                   torch.zeros(base_conv.weight.shape[0], weights.metadata.in_channels - 4,
                                               *base_conv.weight.shape[2:]))
        self.module = TrainableUNet(layers, extra_param, unet, frames, checkpointing, image_adapter)
        self.patcher.add_object_patch(CONV_IN, WidenedConvIn(base_conv, self.module))
        if checkpointing:
            wrap_blocks(self.patcher, unet)
        self.uses_image = image_adapter is not None
        self.attached = False

    def attach(self, device=None) -> None:
        """Apply the object patches and move everything to the compute device."""
        device = device or compute_device()
        self.module.to(device)
        self.patcher.patch_model(device_to=device)
        self.attached = True

    def detach(self) -> None:
        """Restore the base UNet's own blocks (e.g. before sampling through the nodes, and at the end)."""
        if self.attached:
            self.patcher.unpatch_model()
            self.attached = False

    def layers(self, module: TrainableUNet | None = None) -> dict:
        m = module or self.module
        names = {site_key(s.name): s.name for s in self.metadata.site_list()}
        return {names[k]: v for k, v in m.temporal.items()}

    def export(self, state: dict | None = None) -> AtomoVideoWeights:
        """The current (or given: e.g. EMA) trainable values as AtomoVideo weights (CPU copies)."""
        state = state or {k: v.detach() for k, v in self.module.state_dict().items()}
        names = {site_key(s.name): s.name for s in self.metadata.site_list()}
        temporal: dict = {}
        for k, v in state.items():
            if k.startswith("temporal."):
                site, param = k[len("temporal."):].split(".", 1)
                temporal.setdefault(names[site], {})[param] = v.detach().float().cpu().clone()
        extra = state["conv_in_extra"].detach().float().cpu().clone()
        adapter = self.module.image_adapter
        if adapter is None:
            return AtomoVideoWeights(self.metadata, temporal, extra)
        prefix = "image_adapter."
        image_proj = adapter.file_part({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
        proj = adapter.projection
        tokens = proj.tokens if hasattr(proj, "tokens") else proj.latents.shape[1] if hasattr(proj, "latents") else 0
        return AtomoVideoWeights(replace(self.metadata, image_tokens=tokens), temporal, extra, image_proj)


def base_state(base: Base) -> dict:
    """A copy of the base UNet's weights (the frozen part), to prove training never wrote them."""
    return {k: v.detach().cpu().clone() for k, v in base.patcher.model.diffusion_model.state_dict().items()}

