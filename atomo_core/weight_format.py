"""The AtomoVideo weight format: one `.safetensors` file with the temporal layers, the widened input layer
and (optionally) the image projection, described by JSON metadata.

Tensor keys:
- `temporal.<site>.<param>`: the layer inserted at `<site>` (see `unet_sites.Site.name`), e.g.
  `temporal.input_blocks.1.t1.proj_out.weight`;
- `conv_in.extra_weight`: `[320, in_channels - 4, 3, 3]`, the input channels after the 4 noisy-latent channels.
  Channels 0-3 and the bias always come from the user's checkpoint, so community checkpoints keep their own
  input layer (as PIA does);
- `image_proj.*`: the CLIP-image projection (IP-Adapter key names), when present.

Safetensors metadata: `format` = `atomovideo` and `atomovideo` = the JSON of `AtomoVideoMetadata`.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

from .errors import WeightFormatError
from .temporal_layers import TemporalAttention, TemporalConv, TemporalLayer
from .unet_sites import ATTENTION, CONV, Site

FORMAT_NAME = "atomovideo"
FORMAT_VERSION = 1
TEMPORAL_PREFIX = "temporal."
CONV_IN_KEY = "conv_in.extra_weight"
IMAGE_PROJ_PREFIX = "image_proj."
REMEDY = ("get the file again from its source, or write it with the pack's trainer (atomo_train), which writes "
          "valid metadata")
SOURCE_FORMATS = ("atomovideo", "animatediff_v1", "animatediff_v2", "animatediff_v3", "animatelcm", "pia")
# Sampling schedules a file may ask for (see `beta_schedule` below).
SCALED_LINEAR, SQRT_LINEAR, LCM = "scaled_linear", "sqrt_linear", "lcm"
BETA_SCHEDULES = (SCALED_LINEAR, SQRT_LINEAR, LCM)
# Spatial GroupNorm statistics: what a file may declare, plus the host-only option that also normalises the
# spatial transformers' inputs across frames (AnimateDiff-Evolved's v1/PIA behaviour).
PER_FRAME, ACROSS_FRAMES, ACROSS_FRAMES_ALL = "per_frame", "across_frames", "across_frames_all"
SPATIAL_GROUPNORM = (PER_FRAME, ACROSS_FRAMES)
GROUPNORM_MODES = (PER_FRAME, ACROSS_FRAMES, ACROSS_FRAMES_ALL)


@dataclass
class AtomoVideoMetadata:
    """What a file declares about the model it completes. Every field is checked on load."""
    format_version: int = FORMAT_VERSION
    base: str = "sd15"
    in_channels: int = 9
    # Order of the UNet input channels. ComfyUI inpaint models and PIA use the same order.
    channel_layout: tuple = ("noise:4", "mask:1", "image:4")
    # 1 marks a frame whose image latent is given (condition), 0 a frame to generate.
    mask_polarity: str = "1=given"
    prediction: str = "v"
    zero_terminal_snr: bool = True
    max_frames: int = 16
    image_tokens: int = 0
    temporal_conv: bool = True
    attention_blocks: int = 1
    feed_forward: bool = False
    # proj_in/proj_out around the temporal attentions (AnimateDiff has them; AtomoVideo's light layer not).
    attention_projections: bool = False
    heads: int = 8
    sites: list = field(default_factory=list)  # [[block, after, kind, channels], ...]
    # Where the weights came from: "atomovideo" files, or a public format converted on load
    # (see animatediff_format.SOURCE_FORMATS).
    source_format: str = "atomovideo"
    # Sampling schedule the weights want: "scaled_linear" is SD1.5's own (ComfyUI's "linear" betas);
    # AnimateDiff and PIA used ComfyUI's "sqrt_linear" (diffusers' "linear"); "lcm" is LCM-distilled sampling
    # (50 original timesteps) on SD1.5's betas, for AnimateLCM.
    beta_schedule: str = "scaled_linear"
    # How the base UNet's spatial ResNet GroupNorms took statistics in training: "per_frame", or
    # "across_frames" (AnimateDiff v1 and PIA ran the 2D norms on 5-D video tensors).
    spatial_groupnorm: str = "per_frame"
    # The image latent goes to every frame (PIA), not only to the frames the mask marks as given.
    image_on_all_frames: bool = False

    def site_list(self) -> list[Site]:
        return [Site.from_list(s) for s in self.sites]

    def to_json(self) -> str:
        d = asdict(self)
        d["channel_layout"] = list(self.channel_layout)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "AtomoVideoMetadata":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise WeightFormatError(f"the 'atomovideo' metadata is not valid JSON (error at character {e.pos}): "
                                    f"the file was damaged or edited; {REMEDY}") from None
        if not isinstance(d, dict):
            raise WeightFormatError(f"the 'atomovideo' metadata is JSON but not an object of fields; {REMEDY}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise WeightFormatError(f"unknown metadata fields {unknown}: the file is newer than this pack; update it")
        try:
            if "channel_layout" in d:
                d["channel_layout"] = tuple(d["channel_layout"])
            meta = cls(**d)
            meta.check_supported()
        except WeightFormatError:
            raise  # a file this pack cannot use: the message says what to do
        except (TypeError, ValueError, IndexError, AttributeError):
            raise WeightFormatError(f"a metadata field has the wrong type; {REMEDY}") from None
        try:
            meta.check_fields()
        except (TypeError, ValueError, IndexError, AttributeError) as e:  # a damaged file
            detail = e.message if isinstance(e, WeightFormatError) else "a metadata field has the wrong type"
            raise WeightFormatError(f"{detail}; {REMEDY}") from None
        return meta

    def validate(self) -> None:
        self.check_supported()
        self.check_fields()

    def check_supported(self) -> None:
        """What this pack can use: its format version and base family (the messages say what to do)."""
        if self.format_version > FORMAT_VERSION:
            raise WeightFormatError(
                f"format version {self.format_version}; this pack reads up to {FORMAT_VERSION}: update the pack")
        if self.base != "sd15":
            raise WeightFormatError(f"the file is for base family '{self.base}', but this pack supports 'sd15' only: "
                                    "use AtomoVideo weights made for SD1.5")

    def check_fields(self) -> None:
        """Every field holds one of its allowed values."""
        if self.prediction not in ("v", "eps"):
            raise WeightFormatError(f"prediction type '{self.prediction}'; expected 'v' or 'eps'")
        widths = [int(c.split(":")[1]) for c in self.channel_layout]
        if sum(widths) != self.in_channels or not self.channel_layout[0].startswith("noise"):
            raise WeightFormatError(
                f"channel layout {list(self.channel_layout)} does not describe {self.in_channels} input channels "
                "starting with the noisy latent")
        if self.mask_polarity not in ("1=given", "0=given"):
            raise WeightFormatError(f"mask polarity '{self.mask_polarity}'; expected '1=given' or '0=given'")
        if self.max_frames < 1:
            raise WeightFormatError(f"max_frames {self.max_frames} must be at least 1")
        if self.source_format not in SOURCE_FORMATS:
            raise WeightFormatError(f"source format '{self.source_format}'; expected one of {list(SOURCE_FORMATS)}")
        if self.beta_schedule not in BETA_SCHEDULES:
            raise WeightFormatError(f"beta schedule '{self.beta_schedule}'; expected one of {list(BETA_SCHEDULES)}")
        if self.spatial_groupnorm not in SPATIAL_GROUPNORM:
            raise WeightFormatError(
                f"spatial GroupNorm '{self.spatial_groupnorm}'; expected one of {list(SPATIAL_GROUPNORM)}")
        if not isinstance(self.image_on_all_frames, bool):
            raise WeightFormatError(f"image_on_all_frames must be true or false, not {self.image_on_all_frames!r}")


@dataclass
class AtomoVideoWeights:
    metadata: AtomoVideoMetadata
    temporal: dict            # site name -> state dict of that layer
    conv_in_extra: torch.Tensor | None = None
    image_proj: dict | None = None

    def sites(self) -> list[Site]:
        return self.metadata.site_list()

    def build_layers(self) -> dict[str, TemporalLayer]:
        """The temporal layers with this file's values, keyed by site name (strict: every key must match)."""
        layers = {}
        for site in self.sites():
            layer = new_layer(site, self.metadata)
            sd = self.temporal.get(site.name)
            if sd is None:
                raise WeightFormatError(f"no tensors for site {site.name} listed in the metadata")
            missing, unexpected = layer.load_state_dict(sd, strict=False)
            if missing or unexpected:
                raise WeightFormatError(
                    f"site {site.name}: missing keys {sorted(missing)[:5]}, unexpected keys {sorted(unexpected)[:5]}")
            layers[site.name] = layer
        return layers


def new_layer(site: Site, meta: AtomoVideoMetadata) -> TemporalLayer:
    if site.kind == CONV:
        return TemporalConv(site.channels)
    if site.kind == ATTENTION:
        return TemporalAttention(site.channels, heads=meta.heads, max_frames=meta.max_frames,
                                 attention_blocks=meta.attention_blocks, feed_forward=meta.feed_forward,
                                 projections=meta.attention_projections)
    raise WeightFormatError(f"site {site.name} has unknown kind '{site.kind}'")


def fresh_weights(sites: list[Site], **metadata) -> AtomoVideoWeights:
    """Untrained (identity) weights for `sites`: the starting point of training, and a test fixture."""
    meta = AtomoVideoMetadata(sites=[s.as_list() for s in sites], **metadata)
    meta.validate()
    temporal = {s.name: new_layer(s, meta).state_dict() for s in sites}
    extra = torch.zeros(sites[0].channels if sites else 320, meta.in_channels - 4, 3, 3)
    return AtomoVideoWeights(meta, temporal, extra)


def save_atomovideo(path: str | Path, weights: AtomoVideoWeights, extra_metadata: dict | None = None) -> None:
    """`extra_metadata`: further safetensors metadata entries (str -> str), e.g. the trainer's step; readers
    ignore them."""
    tensors = {}
    for site, sd in weights.temporal.items():
        for k, v in sd.items():
            tensors[f"{TEMPORAL_PREFIX}{site}.{k}"] = v.detach().contiguous().cpu()
    if weights.conv_in_extra is not None:
        tensors[CONV_IN_KEY] = weights.conv_in_extra.detach().contiguous().cpu()
    for k, v in (weights.image_proj or {}).items():
        tensors[f"{IMAGE_PROJ_PREFIX}{k}"] = v.detach().contiguous().cpu()
    metadata = dict(extra_metadata or {})
    metadata.update({"format": FORMAT_NAME, FORMAT_NAME: weights.metadata.to_json()})
    save_file(tensors, str(path), metadata=metadata)


def is_atomovideo(metadata: dict | None) -> bool:
    return bool(metadata) and metadata.get("format") == FORMAT_NAME


def atomovideo_from_state_dict(state_dict: dict, metadata: dict) -> AtomoVideoWeights:
    meta = AtomoVideoMetadata.from_json(metadata.get(FORMAT_NAME, "{}"))
    site_names = {s.name for s in meta.site_list()}
    temporal: dict = {}
    image_proj = {}
    conv_in_extra = None
    for key, value in state_dict.items():
        if key.startswith(TEMPORAL_PREFIX):
            rest = key[len(TEMPORAL_PREFIX):]
            site = next((n for n in site_names if rest.startswith(n + ".")), None)
            if site is None:
                raise WeightFormatError(f"tensor '{key}' belongs to no site listed in the metadata")
            temporal.setdefault(site, {})[rest[len(site) + 1:]] = value
        elif key == CONV_IN_KEY:
            conv_in_extra = value
        elif key.startswith(IMAGE_PROJ_PREFIX):
            image_proj[key[len(IMAGE_PROJ_PREFIX):]] = value
        else:
            raise WeightFormatError(f"unexpected tensor '{key}' in an AtomoVideo file")
    expected_extra = meta.in_channels - 4
    if expected_extra and (conv_in_extra is None or conv_in_extra.shape[1] != expected_extra):
        found = None if conv_in_extra is None else list(conv_in_extra.shape)
        raise WeightFormatError(f"'{CONV_IN_KEY}' should have {expected_extra} input channels, found {found}")
    return AtomoVideoWeights(meta, temporal, conv_in_extra, image_proj or None)


def load_atomovideo(path: str | Path) -> AtomoVideoWeights:
    from .weight_files import read_state_dict

    state_dict, metadata = read_state_dict(path)
    if not is_atomovideo(metadata):
        raise WeightFormatError(f"{Path(path).name} is not an AtomoVideo file (metadata: {sorted(metadata)})")
    return atomovideo_from_state_dict(state_dict, metadata)
