"""Public SD1.5 motion modules (AnimateDiff v1/v2/v3, AnimateLCM, PIA) as `AtomoVideoWeights`.

Detection follows the keys and shapes of the released files (see the notes on weight formats):

- motion-module keys are `{down_blocks.i|up_blocks.i|mid_block}.motion_modules.j.temporal_transformer.<param>`;
  SD1.5 files have `down_blocks.0-3` (SDXL files stop at 2);
- PIA: a `conv_in.weight` with 9 input channels beside the modules;
- AnimateLCM: no `pos_encoder` key at all (the positional encoding is the fixed sinusoid of length 64);
- v2: a `mid_block` module; v3: positional encoding of length 32; v1: otherwise (length 24).

Each module becomes a `TemporalAttention(C, heads=8, max_frames=pe length, attention_blocks=2,
feed_forward=True)`, whose parameter names are the keys without `<block>.motion_modules.<j>.temporal_transformer.`.
That layer computes exactly the original `VanillaTemporalModule`: GroupNorm per frame, proj_in, two temporal
self-attentions with the sinusoidal encoding added to their input, a GEGLU feed-forward, each with a pre-LayerNorm,
proj_out and a residual around the module.

Placement follows AnimateDiff-Evolved and the original UNet3D: a module goes after the last spatial transformer of
its ComfyUI block, else after the block's ResBlock (so before any Down/Upsample):
`down_blocks.i.motion_modules.j` -> `input_blocks[[1, 2, 4, 5, 7, 8, 10, 11][2i + j]]`,
`up_blocks.i.motion_modules.j` -> `output_blocks[3i + j]`, `mid_block` -> `middle_block` after its transformer.
There are no temporal convolutions in these files, so none are inserted.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from .errors import WeightFormatError
from .temporal_layers import sinusoidal_encoding
from .unet_sites import ATTENTION, RES, TRANSFORMER, Layout, Site, sd15_layout
from .weight_format import AtomoVideoMetadata, AtomoVideoWeights

DOWN_INPUT_BLOCKS = (1, 2, 4, 5, 7, 8, 10, 11)
UP_MODULES_PER_BLOCK = 3
ANIMATELCM_PE_LENGTH = 64
PIA_LAYOUT = ("noise:4", "affinity:1", "image:4")

ACCEPTED = ("AnimateDiff SD1.5 motion modules v1 (mm_sd_v14/v15), v2 (mm_sd_v15_v2), v3 (v3_sd15_mm), "
            "AnimateLCM (AnimateLCM_sd15_t2v) and PIA (pia.ckpt), as .ckpt/.pth or .safetensors")

# format -> (display name, beta schedule, spatial GroupNorm of the training setup)
FORMATS = {
    "animatediff_v1": ("AnimateDiff v1", "sqrt_linear", "across_frames"),
    "animatediff_v2": ("AnimateDiff v2", "sqrt_linear", "per_frame"),
    "animatediff_v3": ("AnimateDiff v3", "sqrt_linear", "per_frame"),
    # AnimateLCM is LCM-distilled: LCM sampling over 50 original timesteps, as AnimateDiff-Evolved's `autoselect`
    # picks (`lcm`); sample it with the LCM sampler, few steps and low cfg.
    "animatelcm": ("AnimateLCM", "lcm", "per_frame"),
    "pia": ("PIA", "sqrt_linear", "across_frames"),
}

_MODULE_KEY = re.compile(
    r"^(?:(down_blocks)\.(\d+)|(up_blocks)\.(\d+)|(mid_block))\.motion_modules\.(\d+)\.temporal_transformer\.(.+)$")


@dataclass
class DetectedFormat:
    name: str                 # a key of FORMATS
    pe_length: int | None     # from the file; None when the file has no positional encoding (AnimateLCM)
    modules: dict             # (block kind, block index, module index) -> {param: tensor}
    conv_in: torch.Tensor | None
    ignored: list             # keys outside the motion modules (and PIA's conv_in) that were dropped

    @property
    def display_name(self) -> str:
        return FORMATS[self.name][0]


def _keys_with(state_dict: dict, *parts: str) -> list:
    return [k for k in state_dict if any(p in k for p in parts)]


def _refuse(found: str) -> WeightFormatError:
    return WeightFormatError(f"found {found}; this loader accepts AtomoVideo files and {ACCEPTED}.")


def _example(keys) -> str:
    keys = sorted(keys)
    return f"e.g. '{keys[0]}'" if keys else ""


def detect(state_dict: dict) -> DetectedFormat:
    """The public format of `state_dict` with its modules split out; refused formats raise `WeightFormatError`."""
    keys = list(state_dict)
    if _keys_with(state_dict, "image_proj.", "ip_adapter.") and not _keys_with(state_dict, "motion_modules."):
        raise _refuse(f"an IP-Adapter file ({_example(_keys_with(state_dict, 'image_proj.', 'ip_adapter.'))}); "
                      "IP-Adapter files are not temporal layers")
    if _keys_with(state_dict, "controlnet_cond_embedding.", "controlnet_down_blocks."):
        raise _refuse("a SparseCtrl (ControlNet) file (controlnet_cond_embedding/controlnet_down_blocks keys); "
                      "SparseCtrl is not supported")
    motion = _keys_with(state_dict, "motion_modules.", "temporal_attentions.", "temporal_layers.")
    if not motion:
        raise _refuse(f"no motion-module keys ({len(keys)} tensors{', ' + _example(keys) if keys else ''})")
    lora = [k for k in motion if "_lora." in k or ".lora_" in k or ".processor." in k]
    if lora:
        raise _refuse(f"a motion LoRA ({len(lora)} LoRA tensors, {_example(lora)}); motion LoRAs are not supported")
    if _keys_with(state_dict, "pos_encoder.positional_encoding", "temporal_attentions."):
        raise _refuse("a HotshotXL (SDXL) motion module; SDXL motion modules are not supported")
    down = [int(m.group(1)) for m in (re.match(r"^down_blocks\.(\d+)\.", k) for k in motion) if m]
    up = [int(m.group(1)) for m in (re.match(r"^up_blocks\.(\d+)\.", k) for k in motion) if m]
    # SD1.5 modules have down_blocks 0-3 and up_blocks 0-3, SDXL ones (AnimateDiff-SDXL) 0-2. Files with fewer
    # blocks (modules for a smaller SD1.5-family UNet) are accepted; the fit check places them or says why not.
    if down and max(down) == 2 and (not up or max(up) <= 2):
        raise _refuse("an SDXL motion module (down_blocks 0-2, e.g. AnimateDiff-SDXL); SDXL motion modules are "
                      "not supported")
    if (down and max(down) > 3) or (up and max(up) > 3):
        raise _refuse(f"motion-module keys for {max(down + up) + 1} blocks ({_example(motion)}), more than the 4 "
                      "of an SD1.5 UNet")
    if [k for k in motion if ".attn1." in k] and not [k for k in motion if ".temporal_transformer." in k]:
        raise _refuse("a motion module in diffusers' MotionAdapter layout (transformer_blocks.0.attn1...); "
                      "use the original AnimateDiff file (keys with 'temporal_transformer')")
    if _keys_with(state_dict, "img_encoder."):
        raise _refuse("AnimateLCM-I2V (img_encoder keys); its image encoder is not supported")

    modules: dict = {}
    ignored = []
    for k, v in state_dict.items():
        m = _MODULE_KEY.match(k)
        if m is None:
            if "motion_modules." in k:
                raise _refuse(f"a motion-module key of unknown layout '{k}'")
            if k not in ("conv_in.weight", "conv_in.bias"):
                ignored.append(k)
            continue
        if m.group(1):
            where = ("down", int(m.group(2)))
        elif m.group(3):
            where = ("up", int(m.group(4)))
        else:
            where = ("mid", 0)
        modules.setdefault(where + (int(m.group(6)),), {})[m.group(7)] = v

    pe_lengths = {v.shape[1] for k, v in state_dict.items() if k.endswith("pos_encoder.pe")}
    if len(pe_lengths) > 1:
        raise _refuse(f"positional encodings of different lengths {sorted(pe_lengths)}")
    pe_length = pe_lengths.pop() if pe_lengths else None
    conv_in = state_dict.get("conv_in.weight")
    has_mid = any(where[0] == "mid" for where in modules)
    if conv_in is not None:
        if conv_in.ndim != 4 or conv_in.shape[1] != 9:
            raise _refuse(f"a conv_in.weight of shape {list(conv_in.shape)} beside the motion modules; PIA's has "
                          "9 input channels")
        name = "pia"
    elif pe_length is None:
        name = "animatelcm"
    elif has_mid:
        name = "animatediff_v2"
    elif pe_length == 32:
        name = "animatediff_v3"
    else:
        name = "animatediff_v1"
    if name != "animatelcm" and pe_length is None:
        raise _refuse("motion modules without positional encodings")
    return DetectedFormat(name, pe_length, modules, conv_in, ignored)


def _sd15_after(block: str) -> int:
    """The child a module follows in a standard SD1.5 UNet (used when the model lacks the block)."""
    return _after_in(sd15_layout().get(block, [(RES, 0)]))


def _after_in(children) -> int | None:
    kinds = [kind for kind, _ in children]
    if TRANSFORMER in kinds:
        return len(kinds) - 1 - kinds[::-1].index(TRANSFORMER)
    if RES in kinds:
        return kinds.index(RES)
    return None


def module_block(kind: str, block_index: int, module_index: int) -> str:
    """ComfyUI block of a motion module (the notes' and AnimateDiff-Evolved's mapping for SD1.5)."""
    if kind == "down":
        n = 2 * block_index + module_index
        if block_index > 3 or module_index > 1:
            raise _refuse(f"a module down_blocks.{block_index}.motion_modules.{module_index}; SD1.5 files have "
                          "down_blocks 0-3 with modules 0-1")
        return f"input_blocks.{DOWN_INPUT_BLOCKS[n]}"
    if kind == "up":
        if block_index > 3 or module_index > 2:
            raise _refuse(f"a module up_blocks.{block_index}.motion_modules.{module_index}; SD1.5 files have "
                          "up_blocks 0-3 with modules 0-2")
        return f"output_blocks.{UP_MODULES_PER_BLOCK * block_index + module_index}"
    return "middle_block"


def module_site(kind: str, block_index: int, module_index: int, channels: int, layout: Layout | None) -> Site:
    """The site of one module in a UNet of `layout` (standard SD1.5 when None).

    A block the model lacks, or one without ResBlock and transformer, keeps the SD1.5 position, so that the fit
    check names the problem ("does not fit this UNet").
    """
    block = module_block(kind, block_index, module_index)
    layout = layout if layout is not None else sd15_layout()
    after = _after_in(layout[block]) if block in layout else None
    if after is None:
        after = _sd15_after(block)
    return Site(block, after, ATTENTION, channels)


def to_atomovideo(detected: DetectedFormat, layout: Layout | None = None) -> AtomoVideoWeights:
    """The detected file as `AtomoVideoWeights` (sites placed in a UNet of `layout`, SD1.5 when None)."""
    name, beta_schedule, groupnorm = FORMATS[detected.name]
    max_frames = detected.pe_length or ANIMATELCM_PE_LENGTH
    sites, temporal = [], {}
    for (kind, block_index, module_index), params in sorted(detected.modules.items()):
        proj_in = params.get("proj_in.weight")
        if proj_in is None or proj_in.ndim != 2:
            raise _refuse(f"a motion module without a 2-D proj_in.weight ({kind} {block_index}.{module_index})")
        channels = int(proj_in.shape[0])
        site = module_site(kind, block_index, module_index, channels, layout)
        if site.name in temporal:
            raise _refuse(f"two motion modules for the same place {site.name}")
        params = dict(params)
        if detected.pe_length is None:  # AnimateLCM: the fixed sinusoid, as its reference code computes it
            for i in range(2):
                params[f"transformer_blocks.0.attention_blocks.{i}.pos_encoder.pe"] = \
                    sinusoidal_encoding(ANIMATELCM_PE_LENGTH, channels)
        sites.append(site)
        temporal[site.name] = params
    pia = detected.name == "pia"
    meta = AtomoVideoMetadata(
        in_channels=9 if pia else 4,
        channel_layout=PIA_LAYOUT if pia else ("noise:4",),
        mask_polarity="1=given",
        prediction="eps",
        zero_terminal_snr=False,
        max_frames=max_frames,
        temporal_conv=False,
        attention_blocks=2,
        feed_forward=True,
        attention_projections=True,
        heads=8,
        sites=[s.as_list() for s in sites],
        source_format=detected.name,
        beta_schedule=beta_schedule,
        spatial_groupnorm=groupnorm,
        image_on_all_frames=pia,
    )
    meta.validate()
    conv_in_extra = detected.conv_in[:, 4:] if pia else None
    return AtomoVideoWeights(meta, temporal, conv_in_extra)


def is_motion_module(state_dict: dict) -> bool:
    return any("motion_modules." in k or "temporal_attentions." in k for k in state_dict)


def load_public(state_dict: dict, layout: Layout | None = None) -> AtomoVideoWeights:
    return to_atomovideo(detect(state_dict), layout)
