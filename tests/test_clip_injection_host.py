"""AtomoVideoCLIPVisionInject in the real ComfyUI: decoupled cross-attention at every attn2 site (middle block
included), weight 0 / outside the window = bit-identical, cond/uncond tokens, clone safety, file refusals."""
from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors.torch import save_file

from test_image_projection import SD15_WIDTHS, base_state_dict, nested, plus_state_dict

from pack import core

NODE = "AtomoVideoCLIPVisionInject"
FRAMES = 4
TINY_CLIP = {"hidden_size": 64, "image_size": 224, "intermediate_size": 128, "num_attention_heads": 2,
             "num_hidden_layers": 2, "patch_size": 14, "projection_dim": 32, "hidden_act": "gelu",
             "layer_norm_eps": 1e-5, "model_type": "clip_vision_model", "num_channels": 3}


@pytest.fixture(scope="module")
def clip_vision(comfy, tmp_path_factory):
    """A small real `ClipVisionModel` (hidden 64, 2 layers, projection 32) with random values."""
    import comfy.clip_vision as cv
    import fixture_models

    cfg = tmp_path_factory.mktemp("clipvision") / "tiny_clip_vision.json"
    cfg.write_text(json.dumps(TINY_CLIP))
    model = cv.ClipVisionModel(str(cfg))
    shapes = {k: torch.empty(v.shape) for k, v in model.get_sd().items()}
    missing, unexpected = model.load_sd(fixture_models.fill_random_(shapes, seed=21))
    assert not missing and not unexpected
    return model


@pytest.fixture(scope="module")
def site_widths(comfy, base):
    glue = comfy.pack_module("atomo_host.decoupled_attention")
    return [s.inner for s in glue.cross_attention_sites(base[0].get_model_object("diffusion_model"))]


def _scaled(sd, factor=20.0):
    """Larger to_k_ip/to_v_ip so the image attention visibly changes the tiny model's output."""
    return {k: (v * factor if "to_" in k and "_ip" in k else v) for k, v in sd.items()}


@pytest.fixture(scope="module")
def ip_files(comfy, site_widths):
    folder = comfy.models_dir / "ipadapter"
    files = {
        "base": ("tiny_ip_base.safetensors", _scaled(base_state_dict(site_widths, clip_dim=32))),
        "plus": ("tiny_ip_plus.bin", _scaled(plus_state_dict(site_widths, clip_dim=64, dim=64, depth=1, heads=1))),
        "full_width": ("tiny_ip_full_width_base.safetensors", base_state_dict(site_widths, clip_dim=1024)),
        "sd15_layout": ("ip-adapter_sd15_layout.safetensors", base_state_dict(SD15_WIDTHS, clip_dim=32)),
        "sdxl": ("ip-adapter_sdxl_like.safetensors", base_state_dict([640] * len(site_widths), 1280, cross=2048)),
        "faceid": ("ip-adapter-faceid_like.bin", {**base_state_dict(site_widths, clip_dim=32),
                                                   "ip_adapter.0.to_q_lora.down.weight": torch.zeros(128, 320)}),
        "unknown": ("not_an_ipadapter.safetensors", {"model.diffusion_model.x": torch.zeros(2)}),
    }
    for name, sd in files.values():
        if name.endswith(".bin"):
            torch.save(nested(sd) if "unknown" not in name else sd, str(folder / name))
        else:
            save_file(sd, str(folder / name))
    return {k: v[0] for k, v in files.items()}


def inject(comfy, model, clip_vision, projection, weight=1.0, start=0.0, end=1.0, image=None):
    if image is None:
        image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(4))
    return comfy.call(NODE, model=model, clip_vision=clip_vision, image=image, projection=projection,
                      weight=weight, start_percent=start, end_percent=end)[0]


def one_step(comfy, model, pos, neg, denoise=0.5):
    """`comfy.one_step` at cfg 3 from this module's fixed latent."""
    lat = {"samples": torch.randn(FRAMES, 4, 8, 8, generator=torch.Generator().manual_seed(0))}
    return comfy.one_step(model, pos, neg, lat, cfg=3.0, denoise=denoise)


def test_every_cross_attention_site_is_patched_including_the_middle_block(comfy, base, clip_vision, ip_files):
    from comfy.ldm.modules.attention import SpatialTransformer

    model = base[0]
    unet = model.get_model_object("diffusion_model")
    expected = set()
    for i, block in enumerate(unet.input_blocks):
        expected |= {("input", i, 0) for c in block if isinstance(c, SpatialTransformer)}
    expected |= {("middle", 0, 0) for c in unet.middle_block if isinstance(c, SpatialTransformer)}
    for i, block in enumerate(unet.output_blocks):
        expected |= {("output", i, 0) for c in block if isinstance(c, SpatialTransformer)}
    assert ("middle", 0, 0) in expected and len(expected) == sum(isinstance(m, SpatialTransformer)
                                                                 for m in unet.modules())
    m = inject(comfy, model, clip_vision, ip_files["base"])
    patched = m.model_options["transformer_options"]["patches_replace"]["attn2"]
    assert set(patched) == expected
    assert "patches_replace" not in model.model_options["transformer_options"]  # the input model is untouched


def test_weight_zero_is_bit_identical_and_weight_one_changes_the_output(comfy, base, clip_vision, ip_files):
    model, pos, neg = base
    ref = one_step(comfy, model, pos, neg)
    for kind in ("base", "plus"):
        zero = one_step(comfy, inject(comfy, model, clip_vision, ip_files[kind], weight=0.0), pos, neg)
        assert torch.equal(zero, ref), kind
        one = one_step(comfy, inject(comfy, model, clip_vision, ip_files[kind], weight=1.0), pos, neg)
        assert (one - ref).abs().max().item() > 1e-4, kind


def test_outside_start_end_is_bit_identical(comfy, base, clip_vision, ip_files):
    model, pos, neg = base
    # denoise 1.0, one step: the only model call is at sigma_max, i.e. at 0 % of sampling
    ref = one_step(comfy, model, pos, neg, denoise=1.0)
    late = inject(comfy, model, clip_vision, ip_files["base"], start=0.5, end=1.0)
    assert torch.equal(one_step(comfy, late, pos, neg, denoise=1.0), ref)
    early = inject(comfy, model, clip_vision, ip_files["base"], start=0.0, end=0.4)
    assert (one_step(comfy, early, pos, neg, denoise=1.0) - ref).abs().max().item() > 1e-4


def test_middle_block_attention_is_changed(comfy, base, clip_vision, ip_files):
    model, pos, neg = base
    unet = model.get_model_object("diffusion_model")
    st = next(c for c in unet.middle_block if type(c).__name__ == "SpatialTransformer")
    outputs = []
    handle = st.transformer_blocks[0].attn2.to_out.register_forward_hook(
        lambda mod, args, out: outputs.append(out.detach().clone()))
    try:
        one_step(comfy, model, pos, neg)
        one_step(comfy, inject(comfy, model, clip_vision, ip_files["base"]), pos, neg)
    finally:
        handle.remove()
    assert len(outputs) == 2 and (outputs[0] - outputs[1]).abs().max().item() > 1e-4


def test_cond_and_uncond_tokens_are_chosen_per_chunk_in_any_order(comfy, base, clip_vision, ip_files):
    import comfy.ldm.modules.attention as attention

    model = base[0]
    m = inject(comfy, model, clip_vision, ip_files["base"], weight=0.8)
    patch = m.model_options["transformer_options"]["patches_replace"]["attn2"][("input", 1, 0)]
    kv = patch.kv
    g = torch.Generator().manual_seed(3)
    qa, qb = torch.randn(FRAMES, 16, 320, generator=g), torch.randn(FRAMES, 16, 320, generator=g)
    k, v = torch.randn(2 * FRAMES, 77, 320, generator=g), torch.randn(2 * FRAMES, 77, 320, generator=g)
    opts = {"n_heads": 8, "dim_head": 40, "attn_precision": None, "sigmas": torch.full((FRAMES,), 5.0)}
    out_cu = patch(torch.cat([qa, qb]), k, v, {**opts, "cond_or_uncond": [0, 1]})
    out_uc = patch(torch.cat([qb, qa]), torch.cat([k[FRAMES:], k[:FRAMES]]), torch.cat([v[FRAMES:], v[:FRAMES]]),
                   {**opts, "cond_or_uncond": [1, 0]})
    assert torch.allclose(out_cu, torch.cat([out_uc[FRAMES:], out_uc[:FRAMES]]), atol=1e-6)

    def expected(q, kk, vv, tokens):
        kip = (tokens @ kv.to_k_ip[0].weight.T).expand(q.shape[0], -1, -1)
        vip = (tokens @ kv.to_v_ip[0].weight.T).expand(q.shape[0], -1, -1)
        return attention.attention_basic(q, kk, vv, 8) + 0.8 * attention.attention_basic(q, kip, vip, 8)

    for got, want in ((out_cu[:FRAMES], expected(qa, k[:FRAMES], v[:FRAMES], kv.cond_tokens)),
                      (out_cu[FRAMES:], expected(qb, k[FRAMES:], v[FRAMES:], kv.uncond_tokens))):
        assert (got - want).abs().max().item() <= 1e-4 * want.abs().max().item()
    # IP-Adapter base: the uncond tokens are the projection of a zero embedding
    assert not torch.equal(kv.cond_tokens, kv.uncond_tokens)


def test_blank_image_tokens_for_plus(comfy, base, clip_vision, ip_files):
    glue = comfy.pack_module("atomo_host.image_tokens")
    ipj = comfy.pack_module("atomo_core.image_projection")
    weights = ipj.load_ipadapter_file(comfy.models_dir / "ipadapter" / ip_files["plus"])
    blank = glue.blank_image(clip_vision)
    cond, uncond = glue.image_tokens(clip_vision, weights, torch.cat([blank, blank]), "plus")
    assert cond.shape == (32, 768) and uncond.shape == (32, 768)
    assert torch.allclose(cond, uncond, atol=1e-5)  # the blank image's tokens are the uncond tokens


def test_weights_stay_out_of_deep_copies_and_follow_the_device_and_dtype(comfy, base, clip_vision, ip_files):
    m = inject(comfy, base[0], clip_vision, ip_files["base"])
    patches = m.model_options["transformer_options"]["patches_replace"]["attn2"]
    kv = next(iter(patches.values())).kv
    assert all(p.kv is kv for p in patches.values())
    clone = m.clone()
    cloned = clone.model_options["transformer_options"]["patches_replace"]["attn2"]
    assert all(cloned[key] is patches[key] for key in patches)
    assert copy.deepcopy(m.model_options)["transformer_options"]["patches_replace"]["attn2"][("middle", 0, 0)].kv is kv
    p = patches[("middle", 0, 0)]
    assert p.to(torch.float16) is p and kv.cond_tokens.dtype == torch.float16
    assert kv.to_k_ip[0].weight.dtype == torch.float16
    p.to(torch.device("cpu")).to(torch.float32)
    assert kv.cond_tokens.dtype == torch.float32


def test_plus_from_bin_and_stacking_two_injections(comfy, base, clip_vision, ip_files):
    model, pos, neg = base
    plus = inject(comfy, model, clip_vision, ip_files["plus"])
    both = inject(comfy, plus, clip_vision, ip_files["base"], weight=0.0)
    assert torch.equal(one_step(comfy, both, pos, neg), one_step(comfy, plus, pos, neg))


def test_projection_from_atomovideo_weights(comfy, base, clip_vision, site_widths, tiny_models):
    atomovideo_sites = core("unet_sites", "atomovideo_sites")
    fresh_weights, save_atomovideo = core("weight_format", "fresh_weights", "save_atomovideo")

    model, pos, neg = base
    glue = comfy.pack_module("atomo_host.inflation")
    sites = atomovideo_sites(glue.host_layout(model.get_model_object("diffusion_model")))
    w = fresh_weights(sites, prediction="eps", zero_terminal_snr=False, image_tokens=4)
    sd = _scaled(base_state_dict(site_widths, clip_dim=32))
    w.image_proj = {k[len("image_proj."):]: v for k, v in sd.items() if k.startswith("image_proj.")}
    w.image_proj.update({k: v for k, v in sd.items() if k.startswith("ip_adapter.")})
    save_atomovideo(comfy.models_dir / "atomovideo" / "atomo_with_image_proj.safetensors", w)
    inflated = comfy.call("AtomoVideoLoader", model=model, weights="atomo_with_image_proj.safetensors")[0]
    ref = one_step(comfy, inflated, pos, neg)
    m = inject(comfy, inflated, clip_vision, "from AtomoVideo weights")
    assert (one_step(comfy, m, pos, neg) - ref).abs().max().item() > 1e-4

    with pytest.raises(ValueError, match=rf"{NODE}, input 'projection': the model carries no AtomoVideo weights"):
        inject(comfy, model, clip_vision, "from AtomoVideo weights")
    plain = fresh_weights(sites, prediction="eps", zero_terminal_snr=False)
    save_atomovideo(comfy.models_dir / "atomovideo" / "atomo_without_image_proj.safetensors", plain)
    inflated = comfy.call("AtomoVideoLoader", model=model, weights="atomo_without_image_proj.safetensors")[0]
    with pytest.raises(ValueError, match=rf"{NODE}, input 'projection': .*has no image projection"):
        inject(comfy, inflated, clip_vision, "from AtomoVideo weights")


@pytest.mark.parametrize("kind,name,message", [
    ("full_width", "clip_vision", r"wrong width.*image_embeds of width 32.*projects width 1024"),
    ("sd15_layout", "projection", r"16 attention layers but the model has \d+ cross-attention sites"),
    ("sdxl", "projection", "IP-Adapter for SDXL"),
    ("faceid", "projection", "FaceID"),
    ("unknown", "projection", "not an IP-Adapter file"),
])
def test_wrong_files_and_wrong_clip_width_are_refused(comfy, base, clip_vision, ip_files, kind, name, message):
    with pytest.raises(ValueError, match=rf"{NODE}, input '{name}': .*{message}"):
        inject(comfy, base[0], clip_vision, ip_files[kind])


@pytest.mark.parametrize("inputs,name,message", [
    ({"start": 0.8, "end": 0.2}, "end_percent", "before start"),
    ({"start": -0.1}, "start_percent", "outside 0..1"),
    ({"image": torch.rand(1, 64, 64, 2)}, "image", "2 channels"),
    ({"projection": "missing.safetensors"}, "projection", "was not found"),
])
def test_bad_inputs_name_the_node_and_the_input(comfy, base, clip_vision, ip_files, inputs, name, message):
    args = {"projection": ip_files["base"], **inputs}
    with pytest.raises(ValueError, match=rf"{NODE}, input '{name}': .*{message}"):
        inject(comfy, base[0], clip_vision, **args)


def test_not_a_clip_vision_model_is_refused(comfy, base, ip_files):
    with pytest.raises(ValueError, match=rf"{NODE}, input 'clip_vision': expected a CLIP vision model"):
        inject(comfy, base[0], object(), ip_files["base"])


def test_projection_list_shows_the_ipadapter_folder(comfy, ip_files):
    schema = comfy.node_class(NODE).define_schema()
    options = next(i for i in schema.inputs if i.id == "projection").options
    assert options[0] == "from AtomoVideo weights" and ip_files["base"] in options
