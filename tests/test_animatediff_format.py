"""Public motion modules (AnimateDiff v1/v2/v3, AnimateLCM, PIA) without the host: detection, key mapping, site
placement, metadata, refusals, the exact AnimateDiff computation, PIA presets and the PIA image layout."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from safetensors.torch import save_file

from ade_helpers import KEY_COUNTS, TINY_MODULES, state_dict_shapes, synthetic_state_dict

from pack import core

adf = core("animatediff_format")
build_concat, image_on_every_frame, parse_layout = core(
    "conditioning_layout", "build_concat", "image_on_every_frame", "parse_layout")
WeightFormatError = core("errors", "WeightFormatError")
PRESETS, affinity_mask, affinity_values = core("pia_presets", "PRESETS", "affinity_mask", "affinity_values")
sinusoidal_encoding = core("temporal_layers", "sinusoidal_encoding")
ATTENTION, Site = core("unet_sites", "ATTENTION", "Site")
load_temporal_weights = core("weight_files", "load_temporal_weights")
AtomoVideoMetadata, new_layer = core("weight_format", "AtomoVideoMetadata", "new_layer")

ALL = list(KEY_COUNTS)


def expected_sd15_sites(mid: bool) -> list:
    """Where AnimateDiff-Evolved injects each module into ComfyUI's SD1.5 UNet (after the last transformer of
    the block, else after its ResBlock)."""
    sites = []
    for n, block in enumerate((1, 2, 4, 5, 7, 8, 10, 11)):
        ch = (320, 320, 640, 640, 1280, 1280, 1280, 1280)[n]
        sites.append(Site(f"input_blocks.{block}", 0 if block >= 10 else 1, ATTENTION, ch))
    for block in range(12):
        ch = (1280, 1280, 640, 320)[block // 3]
        sites.append(Site(f"output_blocks.{block}", 0 if block < 3 else 1, ATTENTION, ch))
    if mid:
        sites.append(Site("middle_block", 1, ATTENTION, 1280))
    return sites


@pytest.mark.parametrize("fmt", ALL)
def test_public_file_key_sets_are_detected_and_load_with_no_missing_or_unexpected_keys(fmt):
    sd = synthetic_state_dict(fmt)  # meta: keys and shapes only
    assert len(sd) == KEY_COUNTS[fmt]
    detected = adf.detect(sd)
    assert detected.name == fmt and detected.ignored == []
    weights = adf.to_atomovideo(detected)
    meta = weights.metadata
    assert sorted(weights.sites(), key=lambda s: s.name) == sorted(
        expected_sd15_sites(fmt in ("animatediff_v2", "animatelcm")), key=lambda s: s.name)
    assert meta.temporal_conv is False and all(s.kind == ATTENTION for s in weights.sites())
    used = 0
    for site in weights.sites():
        with torch.device("meta"):
            layer = new_layer(site, meta)
        sd_site = weights.temporal[site.name]
        missing, unexpected = layer.load_state_dict(sd_site, strict=False, assign=True)
        assert missing == [] and unexpected == [], (site.name, missing, unexpected)
        assert {k: tuple(v.shape) for k, v in layer.state_dict().items()} == \
               {k: tuple(v.shape) for k, v in sd_site.items()}
        used += len(sd_site)
    added = 2 * len(weights.sites()) if fmt == "animatelcm" else 0   # AnimateLCM: encodings recomputed
    conv_in = 2 if fmt == "pia" else 0                                 # PIA: conv_in goes to the input layer
    assert used - added + conv_in == len(sd)                           # every tensor of the file is used


@pytest.mark.parametrize("fmt,frames,groupnorm,schedule", [("animatediff_v1", 24, "across_frames", "sqrt_linear"),
                                                           ("animatediff_v2", 32, "per_frame", "sqrt_linear"),
                                                           ("animatediff_v3", 32, "per_frame", "sqrt_linear"),
                                                           ("animatelcm", 64, "per_frame", "lcm"),
                                                           ("pia", 32, "across_frames", "sqrt_linear")])
def test_metadata_of_each_format(fmt, frames, groupnorm, schedule):
    meta = adf.load_public(synthetic_state_dict(fmt)).metadata
    assert meta.source_format == fmt
    assert meta.max_frames == frames
    assert meta.spatial_groupnorm == groupnorm
    assert (meta.prediction, meta.zero_terminal_snr, meta.beta_schedule) == ("eps", False, schedule)
    assert (meta.attention_blocks, meta.feed_forward, meta.heads) == (2, True, 8)
    if fmt == "pia":
        assert meta.in_channels == 9 and meta.channel_layout == ("noise:4", "affinity:1", "image:4")
        assert meta.image_on_all_frames is True
    else:
        assert meta.in_channels == 4 and meta.channel_layout == ("noise:4",) and not meta.image_on_all_frames
    AtomoVideoMetadata.from_json(meta.to_json())  # round-trips and validates


def test_real_v2_file_builds_strictly_once():
    """One real allocation of a full v2 file (588 tensors, 453M values) through the strict `build_layers`."""
    sd = {k: torch.zeros(s) for k, s in state_dict_shapes("animatediff_v2").items()}
    layers = adf.load_public(sd).build_layers()
    assert len(layers) == 21
    assert sum(p.numel() for l in layers.values() for p in l.parameters()) == \
           sum(v.numel() for k, v in sd.items() if not k.endswith("pe"))
    del sd, layers


def test_pia_conv_in_extra_is_channels_4_to_8_and_animatelcm_gets_the_sinusoid():
    sd = synthetic_state_dict("pia")
    sd["conv_in.weight"] = torch.randn(320, 9, 3, 3)
    w = adf.load_public(sd)
    assert torch.equal(w.conv_in_extra, sd["conv_in.weight"][:, 4:])
    lcm = adf.load_public(synthetic_state_dict("animatelcm"))
    pe = lcm.temporal["input_blocks.4.t1"]["transformer_blocks.0.attention_blocks.1.pos_encoder.pe"]
    assert torch.equal(pe, sinusoidal_encoding(64, 640))


def test_sites_follow_the_host_layout_and_missing_blocks_keep_the_sd15_place():
    tiny = {"input_blocks.0": [("conv_in", 320)], "input_blocks.1": [("res", 320), ("transformer", 320)],
            "input_blocks.2": [("downsample", 320)], "input_blocks.3": [("res", 320), ("transformer", 320)],
            "middle_block": [("res", 320), ("transformer", 320), ("res", 320)],
            "output_blocks.0": [("res", 320), ("transformer", 320)],
            "output_blocks.1": [("res", 320), ("transformer", 320), ("upsample", 320)],
            "output_blocks.2": [("res", 320), ("transformer", 320)],
            "output_blocks.3": [("res", 320), ("transformer", 320)]}
    w = adf.load_public(synthetic_state_dict("animatediff_v2", TINY_MODULES), tiny)
    assert sorted(s.name for s in w.sites()) == sorted(
        ["input_blocks.1.t1", "output_blocks.0.t1", "output_blocks.1.t1", "output_blocks.2.t1",
         "output_blocks.3.t1", "middle_block.t1"])
    # down_blocks.0.motion_modules.1 -> input_blocks.2, a Downsample here: SD1.5's place, which the fit check refuses
    check_sites_fit = core("unet_sites", "check_sites_fit")

    extra = TINY_MODULES + [("down_blocks.0.motion_modules.1", 320), ("down_blocks.1.motion_modules.0", 320)]
    w = adf.load_public(synthetic_state_dict("animatediff_v2", extra), tiny)
    problems = " ".join(check_sites_fit(w.sites(), tiny))
    assert "input_blocks.2.t1: block 'input_blocks.2' has only 1 layers" in problems
    assert "the model has no block 'input_blocks.4'" in problems


def reference_motion_module(x: torch.Tensor, sd: dict, frames: int, heads: int = 8) -> torch.Tensor:
    """guoyww/AnimateDiff `VanillaTemporalModule` written out from `motion_module.py` (5-D input there; here the
    `(b f) c h w` batch it is given in ComfyUI), used as the reference for the mapping."""
    video = rearrange(x, "(b f) c h w -> b c f h w", f=frames)
    b, c, f, h, w = video.shape
    residual = video
    hs = rearrange(video, "b c f h w -> (b f) c h w")             # TemporalTransformer3DModel.forward
    hs = F.group_norm(hs, 32, sd["norm.weight"], sd["norm.bias"], 1e-6)
    hs = hs.permute(0, 2, 3, 1).reshape(b * f, h * w, c)
    hs = F.linear(hs, sd["proj_in.weight"], sd["proj_in.bias"])
    for i in range(2):                                              # TemporalTransformerBlock: attention blocks
        p = f"transformer_blocks.0.attention_blocks.{i}."
        n = F.layer_norm(hs, (c,), sd[f"transformer_blocks.0.norms.{i}.weight"],
                         sd[f"transformer_blocks.0.norms.{i}.bias"])
        n = rearrange(n, "(b f) d c -> (b d) f c", f=f)             # VersatileAttention, Temporal
        n = n + sd[p + "pos_encoder.pe"][:, :f]
        q, k, v = (F.linear(n, sd[p + t + ".weight"]) for t in ("to_q", "to_k", "to_v"))
        q, k, v = (rearrange(t, "n l (hd d) -> (n hd) l d", hd=heads) for t in (q, k, v))
        att = torch.softmax(q @ k.transpose(1, 2) * (c // heads) ** -0.5, dim=-1) @ v
        att = rearrange(att, "(n hd) l d -> n l (hd d)", hd=heads)
        att = F.linear(att, sd[p + "to_out.0.weight"], sd[p + "to_out.0.bias"])
        hs = rearrange(att, "(b d) f c -> (b f) d c", d=h * w) + hs
    n = F.layer_norm(hs, (c,), sd["transformer_blocks.0.ff_norm.weight"], sd["transformer_blocks.0.ff_norm.bias"])
    a, gate = F.linear(n, sd["transformer_blocks.0.ff.net.0.proj.weight"],
                       sd["transformer_blocks.0.ff.net.0.proj.bias"]).chunk(2, dim=-1)
    hs = F.linear(a * F.gelu(gate), sd["transformer_blocks.0.ff.net.2.weight"],
                  sd["transformer_blocks.0.ff.net.2.bias"]) + hs
    hs = F.linear(hs, sd["proj_out.weight"], sd["proj_out.bias"])
    hs = hs.reshape(b * f, h, w, c).permute(0, 3, 1, 2)
    out = rearrange(hs, "(b f) c h w -> b c f h w", f=f) + residual
    return rearrange(out, "b c f h w -> (b f) c h w")


def test_mapped_layer_computes_the_original_animatediff_module():
    sd = synthetic_state_dict("animatediff_v3", [("down_blocks.0.motion_modules.0", 64)], device="cpu", seed=3)
    w = adf.load_public(sd, {"input_blocks.1": [("res", 64), ("transformer", 64)]})
    layer = w.build_layers()["input_blocks.1.t1"]
    params = w.temporal["input_blocks.1.t1"]
    frames = 6
    x = torch.randn(2 * frames, 64, 5, 3, generator=torch.Generator().manual_seed(1)) * 2 + 0.5
    with torch.no_grad():
        out = layer(x, frames)
        ref = reference_motion_module(x, params, frames)
    assert (out - ref).abs().max().item() < 1e-5
    # the module's own norm is per frame: changing one frame leaves the norm of the others alone, and with
    # attention removed (zero value projections) frames do not interact at all
    params0 = dict(params)
    for i in range(2):
        params0[f"transformer_blocks.0.attention_blocks.{i}.to_v.weight"] = torch.zeros(64, 64)
    layer.load_state_dict(params0)
    poked = x.clone()
    poked[1] += 3.0
    with torch.no_grad():
        d = (layer(x, frames) - layer(poked, frames)).abs().flatten(1).amax(1)
    assert d[1] > 1e-3 and d[[0, 2, 3, 4, 5]].max() == 0.0


def write(tmp_path, name: str, sd: dict) -> str:
    path = tmp_path / name
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return str(path)


def small(fmt, modules=(("down_blocks.0.motion_modules.0", 32),)):
    return synthetic_state_dict(fmt, list(modules), device="cpu")


@pytest.mark.parametrize("name,make,reason", [
    ("mm_sdxl_v10_beta.safetensors",
     lambda: {k.replace("down_blocks.0", f"down_blocks.{i}"): v for i in range(3)
              for k, v in small("animatediff_v3").items()}, r"SDXL motion module"),
    ("hotshotxl.safetensors",
     lambda: {"down_blocks.2.temporal_attentions.0.temporal_transformer.transformer_blocks.0.attention_blocks.0."
              "pos_encoder.positional_encoding": torch.zeros(1, 8, 32)}, r"HotshotXL"),
    ("v2_lora_ZoomIn.safetensors",
     lambda: {"down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0."
              "processor.to_q_lora.down.weight": torch.zeros(4, 32)}, r"motion LoRA"),
    ("v3_sd15_sparsectrl_rgb.safetensors",
     lambda: {"controlnet_cond_embedding.weight": torch.zeros(4), **small("animatediff_v3")}, r"SparseCtrl"),
    ("ip-adapter_sd15.safetensors",
     lambda: {"image_proj.proj.weight": torch.zeros(3072, 8), "ip_adapter.1.to_k_ip.weight": torch.zeros(320, 8)},
     r"IP-Adapter"),
    ("diffusers_motion_adapter.safetensors",
     lambda: {"down_blocks.0.motion_modules.0.transformer_blocks.0.attn1.to_q.weight": torch.zeros(32, 32)},
     r"diffusers' MotionAdapter layout"),
    ("animatelcm_i2v.safetensors", lambda: {"img_encoder.conv_in.weight": torch.zeros(3), **small("animatelcm")},
     r"AnimateLCM-I2V"),
    ("random.safetensors", lambda: {"some.weight": torch.zeros(3, 3)}, r"not a format this pack knows.*1 tensors"),
])
def test_refused_files_say_what_was_found_and_what_is_accepted(tmp_path, name, make, reason):
    with pytest.raises(WeightFormatError, match=reason) as e:
        load_temporal_weights(write(tmp_path, name, make()))
    msg = str(e.value)
    assert name in msg and "AnimateDiff" in msg and "PIA" in msg, msg


def test_ckpt_with_a_state_dict_wrapper_is_read_safely(tmp_path):
    sd = small("animatediff_v1", [("down_blocks.0.motion_modules.0", 32), ("up_blocks.3.motion_modules.2", 32)])
    path = tmp_path / "mm_sd_v15.ckpt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, str(path))
    w = load_temporal_weights(path)
    assert w.metadata.source_format == "animatediff_v1"
    assert sorted(w.temporal) == ["input_blocks.1.t1", "output_blocks.11.t1"]


def test_old_atomovideo_metadata_without_the_new_fields_still_loads_and_validation_stays_strict():
    d = json.loads(AtomoVideoMetadata().to_json())
    for k in ("source_format", "beta_schedule", "spatial_groupnorm", "image_on_all_frames"):
        d.pop(k)
    meta = AtomoVideoMetadata.from_json(json.dumps(d))
    assert (meta.source_format, meta.beta_schedule, meta.spatial_groupnorm, meta.image_on_all_frames) == \
           ("atomovideo", "scaled_linear", "per_frame", False)
    for field, bad in (("source_format", "hotshot"), ("beta_schedule", "cosine"), ("spatial_groupnorm", "both"),
                       ("image_on_all_frames", "yes")):
        with pytest.raises(WeightFormatError, match=f"(?i){field.replace('_', '.')}"):
            AtomoVideoMetadata.from_json(json.dumps({**d, field: bad}))


def test_pia_presets_are_the_papers_tables_read_by_distance_to_the_image_frame():
    assert affinity_values("animation (moderate motion)", 16) == \
           [1.0, 0.8, 0.8, 0.8, 0.79, 0.78, 0.75] + [0.75] * 9
    assert affinity_values("animation (small motion)", 4, cond_frame=2) == [0.85, 0.9, 1.0, 0.9]
    assert affinity_values("loop (small motion)", 16) == PRESETS["loop (small motion)"]
    assert affinity_values("style transfer (large motion)", 3) == [0.5, 0.2, 0.2]
    m = affinity_mask("animation (large motion)", 5, 2, 3)
    assert m.shape == (5, 1, 2, 3) and torch.equal(m[:, 0, 1, 2], torch.tensor([1.0, 0.8, 0.7, 0.7, 0.7]))
    with pytest.raises(ValueError, match="unknown PIA preset"):
        affinity_values("huge", 4)


def test_pia_image_goes_to_every_frame_and_affinity_to_channel_4():
    frames, h, w = 4, 2, 3
    image = torch.zeros(frames, 4, h, w)
    image[0] = torch.randn(4, h, w)
    assert torch.equal(image_on_every_frame(image, frames), repeat(image[0], "c h w -> f c h w", f=frames))
    two = torch.zeros(5, 4, h, w)
    two[0], two[4] = 1.0, 2.0
    assert image_on_every_frame(two, 5)[:, 0, 0, 0].tolist() == [1.0, 1.0, 1.0, 2.0, 2.0]
    mask = affinity_mask("animation (small motion)", frames, h, w)
    batch = torch.cat([image, image])   # cond and uncond chunks
    out = build_concat(parse_layout(adf.PIA_LAYOUT), torch.zeros(2 * frames, 4, h, w), batch, torch.cat([mask, mask]),
                       image_on_all_frames=True, frames=frames)
    assert out.shape == (2 * frames, 5, h, w)
    assert torch.equal(out[:, 0], torch.cat([mask, mask])[:, 0])
    assert torch.equal(out[:, 1:], repeat(image[0], "c h w -> f c h w", f=2 * frames))


def test_binary_frame_mask_becomes_the_presets_affinity():
    frame_mask_to_affinity = core("pia_presets", "frame_mask_to_affinity")

    frames = 6
    mask = torch.zeros(2 * frames, 1, 2, 2)
    mask[0] = 1.0            # video 1: image on frame 0
    mask[frames + 3] = 1.0   # video 2: image on frame 3
    out = frame_mask_to_affinity(mask, frames, "animation (small motion)")
    assert torch.equal(out[:frames, 0, 0, 0], torch.tensor(affinity_values("animation (small motion)", frames, 0)))
    assert torch.equal(out[frames:, 0, 1, 1], torch.tensor(affinity_values("animation (small motion)", frames, 3)))
    assert torch.equal(frame_mask_to_affinity(torch.zeros(3, 1, 2, 2), 3, "loop (small motion)"),
                       torch.zeros(3, 1, 2, 2))
    already = affinity_mask("animation (large motion)", frames, 2, 2)
    assert frame_mask_to_affinity(already, frames, "animation (small motion)") is already
