"""AtomoVideo Demo Model in the real host: the pack's bundled base, VAE and empty conditioning, found and loaded
with nothing copied; the bundled AtomoVideo folder; clear errors for missing files; the headless runner that
`python -m atomo_demo run` uses (validation errors, node failures, the tqdm progress from the host's hook)."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from demo_files import ensure_demo_atomovideo
from pack import module

pytestmark = pytest.mark.host
NODE = "AtomoVideoDemoModel"


@pytest.fixture(scope="module")
def demo(comfy):
    ensure_demo_atomovideo()
    return comfy.pack_module("atomo_host.demo_model")


def test_node_returns_the_bundled_base_vae_and_empty_conditioning(comfy, demo):
    model, vae, positive, negative = comfy.call(NODE)
    path = demo.WEIGHTS_DIR / demo.DEFAULT_BASE
    config = comfy.pack_module("atomo_host.small_base").file_config(path)
    assert type(model.model.model_config).__name__ == "SD15"
    comfy.pack_module("atomo_host.model_family").check_sd15_base(model)  # what AtomoVideo Loader checks
    unet = model.get_model_object("diffusion_model")
    assert unet.model_channels == config["model_channels"] == 64
    with safe_open(str(path), framework="pt") as f:  # the file's weights, not a fresh init
        for key in ("input_blocks.0.0.weight", "out.2.weight"):
            torch.testing.assert_close(unet.state_dict()[key], f.get_tensor("model.diffusion_model." + key).float())
    for cond in (positive, negative):
        assert len(cond) == 1 and cond[0][1] == {}
        assert cond[0][0].shape == (1, 1, config["context_dim"]) and not cond[0][0].any()
    # the VAE is the bundled TAESD-layout file: 8x down, 4 channels, and it decodes what it encodes
    with Image.open(module("atomo_host.demo_run").INPUT_IMAGE) as im:
        image = torch.from_numpy(np.array(im.convert("RGB"))).float()[None] / 255
    latent = comfy.call("VAEEncode", pixels=image, vae=vae)[0]
    decoded = comfy.call("VAEDecode", samples=latent, vae=vae)[0]
    assert latent["samples"].shape == (1, 4, 8, 8) and decoded.shape == image.shape
    mse = ((decoded.float() - image) ** 2).mean()
    assert 10 * torch.log10(1 / mse) > 15.0  # the demo VAE's test PSNR is 18.75 dB; an untrained one gives ~8


def test_node_schema_has_tooltips_and_lists_the_bundled_bases(comfy, demo):
    schema = comfy.node_class(NODE).define_schema()
    assert [i.id for i in schema.inputs] == ["base"]
    assert schema.inputs[0].options[0] == demo.DEFAULT_BASE and schema.inputs[0].optional
    assert all(i.tooltip for i in schema.inputs) and all(o.tooltip for o in schema.outputs)
    assert [o.io_type for o in schema.outputs] == ["MODEL", "VAE", "CONDITIONING", "CONDITIONING"]


def test_the_ordinary_nodes_sample_a_video_with_the_bundled_atomovideo_file(comfy, demo):
    model, vae, positive, negative = comfy.call(NODE)
    names = comfy.pack_module("atomo_host.model_files").file_names(("atomovideo", "animatediff_models"))
    assert demo.ATOMOVIDEO_FILE in names
    path = comfy.pack_module("atomo_host.model_files").file_path(("atomovideo",), demo.ATOMOVIDEO_FILE, "weights")
    assert path == str(demo.ATOMOVIDEO_DIR / demo.ATOMOVIDEO_FILE)  # read from the pack, nothing copied
    video_model = comfy.call("AtomoVideoLoader", model=model, weights=demo.ATOMOVIDEO_FILE)[0]
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(0))
    pos, neg, latent = comfy.call("AtomoVideoImageConditioning", positive=positive, negative=negative, vae=vae,
                                  image=image, frames=4, width=64, height=64)
    samples = comfy.call("AtomoVideoSampler", model=video_model, positive=pos, negative=neg, latent=latent, seed=0,
                         steps=2, cfg=1.0, cfg_rescale=0.0, sampler_name="ddim", scheduler="trailing",
                         denoise=1.0)[0]["samples"]
    assert samples.shape == (4, 4, 8, 8) and torch.isfinite(samples).all()
    assert samples.std() > 0.05  # not a constant


def test_bundled_folder_comes_after_the_users_and_the_yaml_folders(comfy, demo, tmp_path):
    import folder_paths

    files = comfy.pack_module("atomo_host.model_files")
    bundled = str(demo.ATOMOVIDEO_DIR)
    saved = folder_paths.folder_names_and_paths["atomovideo"]
    try:
        # extra_model_paths.yaml ran before the pack loaded: its folder first, an empty extension set
        yaml_dir = str(tmp_path / "yaml_atomovideo")
        folder_paths.folder_names_and_paths["atomovideo"] = ([yaml_dir], set())
        files.register_model_folders()
        files.register_model_folders()  # idempotent
        paths, exts = folder_paths.folder_names_and_paths["atomovideo"]
        assert paths == [yaml_dir, f"{folder_paths.models_dir}/atomovideo", bundled]
        assert ".safetensors" in exts
    finally:
        folder_paths.folder_names_and_paths["atomovideo"] = saved
    assert folder_paths.get_folder_paths("atomovideo")[-1] == bundled
    # a user's file of the same name wins over the bundled one
    user = comfy.models_dir / "atomovideo" / demo.ATOMOVIDEO_FILE
    user.write_bytes((demo.ATOMOVIDEO_DIR / demo.ATOMOVIDEO_FILE).read_bytes())
    try:
        assert files.file_path(("atomovideo",), demo.ATOMOVIDEO_FILE, "weights") == str(user)
    finally:
        user.unlink()


def test_missing_bundled_files_are_named_with_how_to_get_them_back(comfy, demo, tmp_path, monkeypatch):
    AtomoVideoError = module("atomo_core.errors", "AtomoVideoError")
    monkeypatch.setattr(demo, "WEIGHTS_DIR", tmp_path)
    node = comfy.node_class(NODE)
    with pytest.raises(AtomoVideoError, match=rf"^{NODE}, input 'base': the pack's demo file "
                                              rf".*demo_unet\.safetensors is missing.*git checkout -- "
                                              r"atomo_demo/weights.*python -m atomo_demo\.train_base"):
        node.execute(base=demo.DEFAULT_BASE)
    (tmp_path / demo.DEFAULT_BASE).write_bytes((demo.ATOMOVIDEO_DIR.parent / demo.DEFAULT_BASE).read_bytes())
    with pytest.raises(AtomoVideoError, match=rf"^{NODE}, the pack's demo file .*atomo_demo_vae\.safetensors is "
                                              r"missing.*python -m atomo_demo\.train_vae"):
        node.execute(base=demo.DEFAULT_BASE)
    with pytest.raises(AtomoVideoError, match=rf"^{NODE}, input 'base': 'other\.safetensors' is not one of the "
                                              r"pack's demo bases \['demo_unet\.safetensors'\]"):
        node.execute(base="other.safetensors")


# ---------------------------------------------------------------------------------------------------------------
# The headless runner of `python -m atomo_demo run`
# ---------------------------------------------------------------------------------------------------------------
def demo_prompt(demo, steps: int = 3) -> dict:
    return {
        "1": {"class_type": NODE, "inputs": {}},
        "2": {"class_type": "AtomoVideoLoader", "inputs": {"model": ["1", 0], "weights": demo.ATOMOVIDEO_FILE,
                                                           "noise_schedule": "from weights"}},
        "3": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0x336699}},
        "4": {"class_type": "AtomoVideoImageConditioning", "inputs": {
            "positive": ["1", 2], "negative": ["1", 3], "vae": ["1", 1], "image": ["3", 0], "frames": 4, "width": 64,
            "height": 64, "frame_indices": "0", "resize_mode": "crop"}},
        "5": {"class_type": "AtomoVideoSampler", "_meta": {"title": "Image to video"}, "inputs": {
            "model": ["2", 0], "positive": ["4", 0], "negative": ["4", 1], "latent": ["4", 2], "seed": 0,
            "steps": steps, "cfg": 1.0, "cfg_rescale": 0.0, "sampler_name": "ddim", "scheduler": "trailing",
            "denoise": 1.0}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 1]}},
        "7": {"class_type": "SaveAnimatedWEBP", "inputs": {"images": ["6", 0], "filename_prefix": "headless/t",
                                                           "fps": 8.0, "lossless": False, "quality": 90,
                                                           "method": "default"}},
    }


def test_headless_run_shows_progress_from_the_hosts_hook_and_restores_it(comfy, demo):
    import comfy.utils as cu

    headless = module("atomo_host.headless")
    before = (cu.PROGRESS_BAR_HOOK, cu.PROGRESS_BAR_ENABLED)
    bars = io.StringIO()
    outputs = headless.execute(demo_prompt(demo, steps=3), progress_file=bars)
    text = bars.getvalue()
    assert "Image to video" in text and "3/3" in text, text
    assert (cu.PROGRESS_BAR_HOOK, cu.PROGRESS_BAR_ENABLED) == before
    item = outputs["7"]["images"][0]
    with Image.open(comfy.output_dir / item["subfolder"] / item["filename"]) as im:
        assert im.n_frames == 4 and im.size == (64, 64)


def test_headless_run_names_the_node_of_an_invalid_or_failing_prompt(comfy, demo, tmp_path, monkeypatch):
    headless = module("atomo_host.headless")
    prompt = demo_prompt(demo)
    del prompt["2"]["inputs"]["model"]
    with pytest.raises(headless.PromptError, match=r"invalid.*node 2 \(AtomoVideoLoader\).*model"):
        headless.execute(prompt)
    monkeypatch.setattr(demo, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(headless.PromptError, match=rf"node 1 \({NODE}\) failed: AtomoVideoError: {NODE}, input "
                                                   r"'base': the pack's demo file .* is missing"):
        headless.execute(demo_prompt(demo))


def test_demo_command_names_a_missing_bundled_file_before_running(comfy, demo, tmp_path, monkeypatch):
    AtomoVideoError = module("atomo_core.errors", "AtomoVideoError")
    monkeypatch.setattr(demo, "ATOMOVIDEO_DIR", tmp_path)
    with pytest.raises(AtomoVideoError, match=r"demo_atomovideo\.safetensors is missing.*git checkout.*python -m "
                                              r"atomo_train --config atomo_demo/configs/demo_video\.toml"):
        module("atomo_host.demo_run").run_demo(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_demo_previews_use_colours_fitted_to_the_demo_vae(comfy, demo):
    """`--preview-method auto` draws the sampler's estimate through the model's Latent2RGB factors; the demo's are
    fitted to its VAE (SD1.5's give false colours: worse than a grey picture) and reproducible by the command."""
    colors = module("atomo_demo.preview_colors")
    import latent_preview
    from comfy import latent_formats
    from comfy.cli_args import LatentPreviewMethod, args

    model = comfy.call(NODE)[0]
    fmt = model.model.latent_format
    assert fmt.latent_rgb_factors == demo.DEMO_LATENT_RGB and fmt.taesd_decoder_name is None
    assert fmt.scale_factor == latent_formats.SD15().scale_factor == 0.18215
    assert latent_formats.SD15().latent_rgb_factors[0] == [0.3512, 0.2297, 0.3227]  # nothing global changed
    old = args.preview_method
    try:
        args.preview_method = LatentPreviewMethod.Auto
        previewer = latent_preview.get_previewer("cpu", fmt)
    finally:
        args.preview_method = old
    assert isinstance(previewer, latent_preview.Latent2RGBPreviewer)
    torch.testing.assert_close(previewer.latent_rgb_factors, torch.tensor(demo.DEMO_LATENT_RGB).T)

    vae = demo.load_vae()
    test = colors.pairs(vae, colors.frames("test", colors.EVAL_CLIPS))
    shipped = colors.preview_rmse(demo.DEMO_LATENT_RGB, demo.DEMO_LATENT_RGB_BIAS, *test)
    sd15 = colors.preview_rmse(latent_formats.SD15().latent_rgb_factors, None, *test)
    grey = colors.preview_rmse([[0.0] * 3] * 4, None, *test)
    assert shipped < 0.35 and shipped < 0.5 * sd15 and shipped < 0.75 * grey, (shipped, sd15, grey)
    factors, bias = colors.fit(*colors.pairs(vae, colors.frames("train", colors.FIT_CLIPS)))
    torch.testing.assert_close(torch.tensor(factors + [bias]), torch.tensor(demo.DEMO_LATENT_RGB +
                                                                            [demo.DEMO_LATENT_RGB_BIAS]),
                               atol=6e-4, rtol=0)
