"""AtomoVideoLoader in the real ComfyUI: inflation, identity at init, frame mixing, LoRA, refusals."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file, save_file

import fixture_models

FRAMES = 16


def latent(frames=FRAMES, seed=0, size=8):
    g = torch.Generator().manual_seed(seed)
    return {"samples": torch.randn(frames, 4, size, size, generator=g)}


def inflated(comfy, model, weights):
    return comfy.call("AtomoVideoLoader", model=model, weights=weights)[0]


def test_inserted_layers_match_the_hosts_resblocks_and_transformers(comfy, base, atomo_weights):
    from comfy.ldm.modules.attention import SpatialTransformer
    from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock

    model = base[0]
    unet = model.get_model_object("diffusion_model")
    resblocks = sum(isinstance(m, ResBlock) for m in unet.modules())
    transformers = sum(isinstance(m, SpatialTransformer) for m in unet.modules())
    assert resblocks > 0 and transformers > 0

    m = inflated(comfy, model, atomo_weights["fresh"])
    layers = comfy.pack_module("atomo_core.temporal_layers")
    patched = {k: v for k, v in m.object_patches.items() if k.startswith("diffusion_model.")}
    convs = sum(isinstance(c, layers.TemporalConv) for seq in patched.values() for c in seq)
    attns = sum(isinstance(c, layers.TemporalAttention) for seq in patched.values() for c in seq)
    assert (convs, attns) == (resblocks, transformers)
    # every temporal conv directly follows a ResBlock, every attention a SpatialTransformer
    for seq in patched.values():
        kids = list(seq)
        for prev, cur in zip(kids, kids[1:]):
            if isinstance(cur, layers.TemporalConv):
                assert isinstance(prev, ResBlock)
            if isinstance(cur, layers.TemporalAttention):
                assert isinstance(prev, SpatialTransformer)


def test_fresh_inflation_reproduces_the_base_model_frame_by_frame(comfy, base, atomo_weights):
    model, pos, neg = base
    lat = latent()
    ref = comfy.one_step(model, pos, neg, lat, cfg=3.0)
    out = comfy.one_step(inflated(comfy, model, atomo_weights["fresh"]), pos, neg, lat, cfg=3.0)
    assert out.shape == (FRAMES, 4, 8, 8)
    assert (out - ref).abs().max().item() <= 1e-5
    assert (out - lat["samples"]).abs().max().item() > 1e-3  # the step did something


def test_non_zero_temporal_layers_mix_frames(comfy, base, atomo_weights):
    model, pos, neg = base
    lat = latent(frames=4)
    poked = {"samples": lat["samples"].clone()}
    poked["samples"][1] += 1.0

    mixing = inflated(comfy, model, atomo_weights["random"])
    a, b = comfy.one_step(mixing, pos, neg, lat, cfg=1.0), comfy.one_step(mixing, pos, neg, poked, cfg=1.0)
    changed = (a - b).abs().flatten(1).max(dim=1).values
    assert changed[0] > 1e-4 and changed[2] > 1e-4 and changed[3] > 1e-4, changed

    fresh = inflated(comfy, model, atomo_weights["fresh"])
    a, b = comfy.one_step(fresh, pos, neg, lat, cfg=1.0), comfy.one_step(fresh, pos, neg, poked, cfg=1.0)
    changed = (a - b).abs().flatten(1).max(dim=1).values
    assert changed[1] > 1e-4 and changed[[0, 2, 3]].max() == 0.0, changed


def test_single_frame_works(comfy, base, atomo_weights):
    model, pos, neg = base
    out = comfy.one_step(inflated(comfy, model, atomo_weights["random"]), pos, neg, latent(frames=1), cfg=1.0)
    assert out.shape == (1, 4, 8, 8) and torch.isfinite(out).all()


def test_frames_beyond_the_weights_are_refused_naming_node_and_input(comfy, base, atomo_weights):
    model, pos, neg = base
    m = inflated(comfy, model, atomo_weights["fresh"])
    with pytest.raises(ValueError, match=r"AtomoVideoLoader, input 'weights'.*at most 16 frames.*17"):
        comfy.one_step(m, pos, neg, latent(frames=17), cfg=1.0)


def test_input_layer_is_widened_by_a_weight_patch_and_restored(comfy, base, atomo_weights):
    model, pos, neg = base
    import comfy.model_management as mm

    key = "diffusion_model.input_blocks.0.0.weight"
    mm.unload_all_models()  # unpatch whatever clone earlier tests left applied
    before = model.model.state_dict()[key].clone()
    assert before.shape[1] == 4
    m = inflated(comfy, model, atomo_weights["random"])
    comfy.one_step(m, pos, neg, latent(frames=2), cfg=1.0)
    extra = load_file(str(comfy.models_dir / "atomovideo" / atomo_weights["random"]))["conv_in.extra_weight"]
    m.patch_model()
    try:
        w = m.model.state_dict()[key]
        assert w.shape[1] == 9
        assert torch.equal(w[:, :4].float(), before.float())
        assert torch.allclose(w[:, 4:].float(), extra.float().to(w.dtype).float(), atol=1e-3)
    finally:
        m.unpatch_model()
    mm.unload_all_models()
    after = model.model.state_dict()[key]
    assert after.shape == before.shape and torch.equal(after, before)


def _write_lora(comfy, name: str, seed: int = 9) -> str:
    g = torch.Generator().manual_seed(seed)
    lora = {}
    for target in ("input_blocks.1.1.proj_in", "output_blocks.3.1.proj_out", "middle_block.1.proj_in"):
        lora[f"diffusion_model.{target}.lora_up.weight"] = torch.randn(320, 4, 1, 1, generator=g) * 0.5
        lora[f"diffusion_model.{target}.lora_down.weight"] = torch.randn(4, 320, 1, 1, generator=g) * 0.5
    path = comfy.models_dir / "loras" / name
    save_file(lora, str(path))
    return name


def test_lora_before_and_after_the_loader_acts_as_on_the_plain_model(comfy, base, atomo_weights):
    model, pos, neg = base
    lora = _write_lora(comfy, "atomo_test_lora.safetensors")
    lat = latent(frames=4)
    plain = comfy.one_step(model, pos, neg, lat, cfg=1.0)
    with_lora = comfy.call("LoraLoaderModelOnly", model=model, lora_name=lora, strength_model=1.0)[0]
    ref = comfy.one_step(with_lora, pos, neg, lat, cfg=1.0)
    assert (ref - plain).abs().max() > 1e-3  # the LoRA matters

    before = inflated(comfy, with_lora, atomo_weights["fresh"])
    after = comfy.call("LoraLoaderModelOnly", model=inflated(comfy, model, atomo_weights["fresh"]),
                       lora_name=lora, strength_model=1.0)[0]
    for m in (before, after):
        assert (comfy.one_step(m, pos, neg, lat, cfg=1.0) - ref).abs().max().item() <= 1e-5


def _plain_run_script(comfy, ckpt: str) -> str:
    return textwrap.dedent(f"""
        import sys, pathlib, torch
        sys.path.append({str(comfy.path.parent)!r})
        sys.path.append({str(__import__('pathlib').Path(__file__).parent)!r})
        from comfy_host import ComfyHost
        h = ComfyHost(pathlib.Path({str(comfy.path)!r}), pathlib.Path({str(comfy.work_dir / 'fresh')!r}))
        import folder_paths
        folder_paths.add_model_folder_path("checkpoints", {str(comfy.models_dir / 'checkpoints')!r}, True)
        model, clip, vae = h.load_checkpoint({ckpt!r})
        pos, neg = h.encode(clip, "a cat walking"), h.encode(clip, "")
        g = torch.Generator().manual_seed(0)
        lat = {{"samples": torch.randn(4, 4, 8, 8, generator=g)}}
        out = h.ksample(model, pos, neg, lat, steps=2, cfg=3.0, seed=7)["samples"]
        torch.save(out, sys.argv[1])
    """)


def test_plain_run_after_atomovideo_run_is_bit_identical_to_a_fresh_process(comfy, base, tiny_models, atomo_weights,
                                                                          tmp_path):
    model, pos, neg = base
    m = inflated(comfy, model, atomo_weights["random"])
    comfy.ksample(m, pos, neg, latent(frames=4), steps=2, cfg=3.0, seed=3)
    g = torch.Generator().manual_seed(0)
    here = comfy.ksample(model, pos, neg, {"samples": torch.randn(4, 4, 8, 8, generator=g)}, steps=2, cfg=3.0,
                         seed=7)["samples"]

    script = tmp_path / "plain.py"
    script.write_text(_plain_run_script(comfy, tiny_models["checkpoint"]))
    out_file = tmp_path / "fresh.pt"
    proc = subprocess.run([sys.executable, str(script), str(out_file)], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "COMFYUI_PATH": str(comfy.path)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    fresh = torch.load(out_file)
    assert torch.equal(here, fresh)


def test_loader_node_through_a_prompt(comfy, tiny_models, atomo_weights):
    prompt = {
        **fixture_models.loader_prompt(tiny_models, atomo_weights["random"]),
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 4}},
        "5": {"class_type": "KSampler", "inputs": {"model": ["2", 0], "positive": ["3", 0], "negative": ["3", 0],
                                                   "latent_image": ["4", 0], "seed": 1, "steps": 2, "cfg": 2.0,
                                                   "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0}},
        "6": {"class_type": "SaveLatent", "inputs": {"samples": ["5", 0], "filename_prefix": "atomo_loader_test"}},
    }
    comfy.run(prompt)
    files = sorted((comfy.output_dir).rglob("atomo_loader_test*.latent"))
    assert files
    saved = load_file(str(files[-1]))["latent_tensor"]
    assert saved.shape == (4, 4, 8, 8) and torch.isfinite(saved).all()


def test_v_weights_switch_the_model_to_v_prediction_and_zero_snr(comfy, base, atomo_weights):
    import comfy.model_sampling as ms

    model = base[0]
    m = inflated(comfy, model, atomo_weights["fresh_v"])
    sampling = m.get_model_object("model_sampling")
    assert isinstance(sampling, ms.V_PREDICTION)
    assert sampling.sigma_max.item() > 4000  # zero terminal SNR (ComfyUI caps it at about 4518.8)
    assert not isinstance(model.get_model_object("model_sampling"), ms.V_PREDICTION)
    kept = comfy.call("AtomoVideoLoader", model=model, weights=atomo_weights["fresh_v"],
                      noise_schedule="keep model's")[0]
    assert not isinstance(kept.get_model_object("model_sampling"), ms.V_PREDICTION)


def test_inpaint_base_is_refused_naming_node_and_input(comfy, tiny_models, atomo_weights):
    unet = comfy.call("UNETLoader", unet_name=tiny_models["inpaint_unet"], weight_dtype="default")[0]
    with pytest.raises(ValueError, match=r"AtomoVideoLoader, input 'model'.*inpainting"):
        inflated(comfy, unet, atomo_weights["fresh"])


@pytest.mark.parametrize("family", ["SDXL", "SD20", "SVD_img2vid"])
def test_other_families_are_refused_naming_node_and_input(comfy, atomo_weights, family):
    import comfy.supported_models as sm

    cls = getattr(sm, family)
    config = cls(dict(cls.unet_config))
    fake_model = type("Model", (), {"model_config": config})()  # the family check reads only model_config
    patcher = type("Patcher", (), {"model": fake_model})()
    with pytest.raises(ValueError, match=r"AtomoVideoLoader, input 'model': this is an? .*SD1\.5 checkpoints only"):
        inflated(comfy, patcher, atomo_weights["fresh"])


def test_loading_twice_is_refused(comfy, base, atomo_weights):
    m = inflated(comfy, base[0], atomo_weights["fresh"])
    with pytest.raises(ValueError, match="already has AtomoVideo temporal layers"):
        inflated(comfy, m, atomo_weights["fresh"])


def test_unknown_weight_file_is_refused_with_what_was_found(comfy, base):
    path = comfy.models_dir / "atomovideo" / "not_a_motion_model.safetensors"
    save_file({"some.weight": torch.zeros(3, 3)}, str(path))
    with pytest.raises(ValueError, match=r"AtomoVideoLoader, input 'weights'.*not a format this pack knows.*1 tensors"):
        inflated(comfy, base[0], path.name)


def test_weight_folder_honours_extra_model_paths(comfy, tmp_path):
    import folder_paths

    extra = tmp_path / "elsewhere"
    extra.mkdir()
    save_file({"x": torch.zeros(1)}, str(extra / "from_yaml.safetensors"))
    folder_paths.add_model_folder_path("atomovideo", str(extra))  # what extra_model_paths.yaml does
    try:
        assert "from_yaml.safetensors" in folder_paths.get_filename_list("atomovideo")
        schema = comfy.node_class("AtomoVideoLoader").define_schema()
        weights_input = next(i for i in schema.inputs if i.id == "weights")
        assert "from_yaml.safetensors" in weights_input.options
    finally:
        folder_paths.folder_names_and_paths["atomovideo"][0].remove(str(extra))


def test_every_input_has_a_tooltip(comfy):
    import nodes

    pack_nodes = [cls for name, cls in nodes.NODE_CLASS_MAPPINGS.items() if name.startswith("AtomoVideo")]
    assert pack_nodes
    for cls in pack_nodes:
        for inp in cls.define_schema().inputs:
            assert inp.tooltip, f"{cls.__name__}.{inp.id} has no tooltip"


def test_tests_and_the_host_share_one_copy_of_each_module(comfy, base, atomo_weights):
    import pack

    assert comfy.pack.__name__ == pack.PACK and "atomo_core" not in sys.modules
    layers = pack.core("temporal_layers")
    assert layers is comfy.pack_module("atomo_core.temporal_layers")
    assert pack.module("atomo_host.inflation") is comfy.pack_module("atomo_host.inflation")
    # so a layer the loader node inserted is an instance of the class the tests import
    model = inflated(comfy, base[0], atomo_weights["fresh"])
    blocks = [p for k, p in model.object_patches.items() if k.startswith("diffusion_model.")]
    assert any(isinstance(c, layers.TemporalLayer) for b in blocks for c in b.children())
