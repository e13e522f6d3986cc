"""Initialisation from public files: the trainer's model before any step computes what AtomoVideoLoader builds
from pack import module
from those files (same 9-channel input, same timestep and context), in the real ComfyUI."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from ade_helpers import TINY_MODULES, synthetic_state_dict
from pack import module
from train_helpers import run_config
from train_ip_helpers import site_widths, tiny_clip_vision, write_ip_files

FRAMES = 4


@pytest.fixture(scope="module")
def public_files(comfy, tmp_path_factory):
    folder = comfy.models_dir / "animatediff_models"
    no_mid = [m for m in TINY_MODULES if not m[0].startswith("mid")]
    v3 = synthetic_state_dict("animatediff_v3", no_mid, device="cpu", seed=12)
    pia = synthetic_state_dict("pia", no_mid, device="cpu", seed=14)
    g = torch.Generator().manual_seed(15)
    pia["conv_in.weight"] = torch.randn(320, 9, 3, 3, generator=g) * 0.1
    pia["conv_in.bias"] = torch.randn(320, generator=g)
    names = {"v3": "train_init_v3.safetensors", "pia": "train_init_pia.safetensors"}
    for key, sd in (("v3", v3), ("pia", pia)):
        save_file({k: v.contiguous() for k, v in sd.items()}, str(folder / names[key]))
    return {k: (n, folder / n) for k, n in names.items()}


def trainer_model(comfy, tiny_models, tmp_path, init: dict, model: dict | None = None, clip_width=None):
    setup = module("atomo_train.model_setup")
    config = module("atomo_train.config")
    d = run_config(comfy, tiny_models["checkpoint"], tmp_path, init={k: str(v) for k, v in init.items()})
    d["model"].update({"max_frames": 32, **(model or {})})
    cfg = config.TrainConfig.from_dict(d)
    base = setup.load_base(cfg.model.checkpoint)
    weights = setup.initial_weights(cfg.model, cfg.init, setup.unet_layout(base.patcher), cfg.optim.seed)
    adapter = module("atomo_train.image_projection").build_adapter(
        cfg.model, cfg.init, base.patcher.get_model_object("diffusion_model"), clip_width)
    return base, setup.TrainerModel(base, weights, FRAMES, image_adapter=adapter)


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    n = 2 * FRAMES
    return (torch.randn(n, 9, 8, 8, generator=g), torch.full((n,), 433.0), torch.randn(n, 77, 768, generator=g))


def loader_unet(comfy, base, name, x, t, ctx):
    """The UNet of AtomoVideoLoader's model for `name` (per-frame GroupNorm, as the trainer trains)."""
    import comfy.model_management as comfy_mm

    loaded = comfy.call("AtomoVideoLoader", model=base.patcher, weights=name, noise_schedule="keep model's",
                        spatial_groupnorm="per frame")[0]
    comfy_mm.load_models_gpu([loaded])
    to = dict(loaded.model_options["transformer_options"], cond_or_uncond=[0, 0])
    with torch.no_grad():
        out = loaded.model.diffusion_model(x, t, context=ctx, transformer_options=to)
    comfy_mm.unload_all_models()
    return out


def trainer_unet(tm, x, t, ctx, image=None):
    tm.attach(torch.device("cpu"))
    with torch.no_grad():
        out = tm.module(x[:, :4], t, ctx, x[:, 4:], image)
    tm.detach()
    return out


def test_init_from_animatediff_v3_and_pia_is_the_loaders_v3_model_plus_pias_input_channels(
        comfy, tiny_models, public_files, tmp_path):
    base, tm = trainer_model(comfy, tiny_models, tmp_path, {"motion_module": public_files["v3"][1],
                                                           "pia": public_files["pia"][1]})
    x, t, ctx = inputs()
    x4 = x.clone()
    x4[:, 4:] = 0  # no image given: the extra channels add nothing, so this is the v3 model exactly
    ref = loader_unet(comfy, base, public_files["v3"][0], x4[:, :4], t, ctx)
    assert (trainer_unet(tm, x4, t, ctx) - ref).abs().max().item() <= 1e-5
    # with an image the extra channels are PIA's: the output changes by exactly PIA's conv_in contribution
    assert (trainer_unet(tm, x, t, ctx) - ref).abs().max().item() > 1e-3
    extra = tm.module.conv_in_extra.detach()
    pia_extra = public_files["pia"]
    from safetensors.torch import load_file

    assert torch.equal(extra, load_file(str(pia_extra[1]))["conv_in.weight"][:, 4:].float())


def test_init_from_pia_alone_is_the_loaders_pia_model(comfy, tiny_models, public_files, tmp_path):
    base, tm = trainer_model(comfy, tiny_models, tmp_path, {"motion_module": public_files["pia"][1],
                                                           "pia": public_files["pia"][1]})
    x, t, ctx = inputs(1)
    ref = loader_unet(comfy, base, public_files["pia"][0], x, t, ctx)
    ours = trainer_unet(tm, x, t, ctx)
    assert (ours - ref).abs().max().item() <= 1e-5
    assert (ours - base.patcher.model.diffusion_model(x[:, :4], t, context=ctx)).abs().max() > 1e-3


def test_init_files_of_the_wrong_kind_are_refused_naming_the_key(comfy, tiny_models, public_files, tmp_path):
    errors = module("atomo_train.errors")
    with pytest.raises(errors.ConfigError, match=r"config key 'init.pia'.*not PIA"):
        trainer_model(comfy, tiny_models, tmp_path, {"pia": public_files["v3"][1]})
    with pytest.raises(errors.ConfigError, match=r"config key 'init.motion_module': file not found"):
        trainer_model(comfy, tiny_models, tmp_path, {"motion_module": tmp_path / "missing.ckpt"})


@pytest.fixture(scope="module")
def clip_vision(comfy, tmp_path_factory):
    return tiny_clip_vision(tmp_path_factory.mktemp("clipvision"))


@pytest.fixture(scope="module")
def ip_files(comfy, base):
    return write_ip_files(comfy, site_widths(comfy, base[0]))


def injected_unet(comfy, base, motion_name, clip_vision, ip_name, image, x, t, ctx):
    """AtomoVideoLoader + AtomoVideoCLIPVisionInject (weight 1) on `image`, called on the conditional branch."""
    import comfy.model_management as comfy_mm

    loaded = comfy.call("AtomoVideoLoader", model=base.patcher, weights=motion_name, noise_schedule="keep model's",
                        spatial_groupnorm="per frame")[0]
    injected = comfy.call("AtomoVideoCLIPVisionInject", model=loaded, clip_vision=clip_vision, image=image,
                          projection=ip_name, weight=1.0, start_percent=0.0, end_percent=1.0)[0]
    comfy_mm.load_models_gpu([injected])
    to = dict(injected.model_options["transformer_options"], cond_or_uncond=[0, 0])
    with torch.no_grad():
        out = injected.model.diffusion_model(x, t, context=ctx, transformer_options=to)
    comfy_mm.unload_all_models()
    return out


@pytest.mark.parametrize("kind", ["base", "plus"])
def test_init_from_v3_pia_and_ip_adapter_is_the_loader_plus_clip_vision_injection(
        comfy, tiny_models, public_files, clip_vision, ip_files, tmp_path, kind):
    cv_model, cv_path = clip_vision
    features_of = module("atomo_host.image_tokens").clip_features
    ipj = module("atomo_core.image_projection")
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(9))
    features = features_of(cv_model, image, ipj.CLIP_INPUT[kind])
    features = features.unsqueeze(1) if features.dim() == 2 else features  # as the cache stores them
    base, tm = trainer_model(comfy, tiny_models, tmp_path, {"motion_module": public_files["v3"][1],
                                                           "pia": public_files["pia"][1],
                                                           "ip_adapter": ip_files[kind][1]},
                             model={"clip_vision": str(cv_path)}, clip_width=features.shape[-1])
    assert tm.module.image_adapter.kind == kind
    x, t, ctx = inputs(2)
    x[:, 4:] = 0  # no concat image: the loader's v3 model has no extra input channels
    ref = injected_unet(comfy, base, public_files["v3"][0], cv_model, ip_files[kind][0], image, x[:, :4], t, ctx)
    ours = trainer_unet(tm, x, t, ctx, features.expand(2, *features.shape[1:]))
    assert (ours - ref).abs().max().item() <= 1e-5
    # the injection is really there: without it the same trainer inputs give the v3 model alone
    plain = loader_unet(comfy, base, public_files["v3"][0], x[:, :4], t, ctx)
    assert (ref - plain).abs().max().item() > 1e-3


def test_image_projection_keys_are_checked_naming_the_config_key(comfy, tiny_models, public_files, clip_vision,
                                                                 ip_files, tmp_path):
    errors = module("atomo_train.errors")
    cv_path = str(clip_vision[1])
    with pytest.raises(errors.ConfigError, match=r"'model.clip_vision'.*CLIP vision model gives"):
        trainer_model(comfy, tiny_models, tmp_path, {"ip_adapter": ip_files["base"][1]},
                      model={"clip_vision": cv_path}, clip_width=64)  # base reads the 32-wide image_embeds
    with pytest.raises(errors.ConfigError, match=r"'init.ip_adapter'.*not an IP-Adapter file"):
        trainer_model(comfy, tiny_models, tmp_path, {"ip_adapter": public_files["v3"][1]},
                      model={"clip_vision": cv_path}, clip_width=32)
    with pytest.raises(errors.ConfigError, match=r"'init.ip_adapter'.*is an IP-Adapter 'plus'"):
        trainer_model(comfy, tiny_models, tmp_path, {"ip_adapter": ip_files["plus"][1]},
                      model={"clip_vision": cv_path, "image_projection": "base"}, clip_width=64)
    with pytest.raises(errors.ConfigError, match=r"'model.clip_vision': is required with init.ip_adapter"):
        trainer_model(comfy, tiny_models, tmp_path, {"ip_adapter": ip_files["base"][1]})
