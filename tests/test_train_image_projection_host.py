"""Training the image projection in the real ComfyUI on the tiny fixture: a fresh projection is the identity, one
step trains the projection only when asked, the written file's `image_proj.*` gives the trained model's output
through AtomoVideoLoader + AtomoVideoCLIPVisionInject ("from AtomoVideo weights"); gradient checkpointing of the
frozen ResBlocks / SpatialTransformers gives the same loss and gradients and really checkpoints them."""
from __future__ import annotations

import pytest
import torch

from pack import module
from train_helpers import FRAMES, SIZE, run_config
from train_ip_helpers import site_widths, tiny_clip_vision, write_ip_files


@pytest.fixture(scope="module")
def clip_vision(comfy, tmp_path_factory):
    return tiny_clip_vision(tmp_path_factory.mktemp("clipvision"))


@pytest.fixture(scope="module")
def ip_files(comfy, base):
    return write_ip_files(comfy, site_widths(comfy, base[0]))


class ClipsWithImages(torch.utils.data.Dataset):
    """Items as `CachedClips` gives them with CLIP-vision features ([F,1,32] image_embeds of every frame)."""

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


@pytest.fixture(scope="module")
def clips(comfy, tiny_models, clip_vision):
    make_clip, split_seeds = module("atomo_demo.world", "make_clip", "split_seeds")
    setup, enc = module("atomo_train.model_setup"), module("atomo_train.encoders")
    base = setup.load_base(comfy.models_dir / "checkpoints" / tiny_models["checkpoint"], clip=True, vae=True)
    vae_encode = enc.vae_encoder(base.vae, base.patcher.get_model_object("latent_format"))
    text_encode = enc.text_encoder(base.clip)
    image_encode = enc.image_encoder(clip_vision[0], "image_embeds")
    items = []
    for i, seed in enumerate(split_seeds("train", 4)):
        frames, caption = make_clip(seed, frames=FRAMES, size=SIZE)
        pixels = torch.from_numpy(frames).float().div(255).permute(0, 3, 1, 2)
        tokens = image_encode(pixels)
        assert tokens.shape == (FRAMES, 1, 32)
        items.append({"latents": vae_encode(pixels), "text": text_encode([caption])[0],
                      "image_tokens": tokens.half().float(), "clip_id": f"clip{i}"})
    return ClipsWithImages(items), text_encode([""])[0]


def make_model(comfy, tiny_models, tmp_path, cv_path, init=None, checkpointing=False, clip_width=32, **model):
    config, setup = module("atomo_train.config"), module("atomo_train.model_setup")
    ip = module("atomo_train.image_projection")
    d = run_config(comfy, tiny_models["checkpoint"], tmp_path, init={k: str(v) for k, v in (init or {}).items()},
                   model={"clip_vision": str(cv_path), "gradient_checkpointing": checkpointing, **model})
    cfg = config.TrainConfig.from_dict(d)
    base = setup.load_base(cfg.model.checkpoint)
    weights = setup.initial_weights(cfg.model, cfg.init, setup.unet_layout(base.patcher), cfg.optim.seed)
    adapter = ip.build_adapter(cfg.model, cfg.init, base.patcher.get_model_object("diffusion_model"), clip_width)
    return cfg, base, setup.TrainerModel(base, weights, FRAMES, checkpointing=checkpointing, image_adapter=adapter)


def inputs(seed=0, clips=2):
    g = torch.Generator().manual_seed(seed)
    n = clips * FRAMES
    return (torch.randn(n, 4, 8, 8, generator=g), torch.full((n,), 601.0), torch.randn(n, 77, 768, generator=g) * 0.5,
            torch.randn(n, 5, 8, 8, generator=g), torch.randn(clips, 1, 32, generator=g))


def adapter_params(tm) -> dict:
    return {k: v.detach().clone() for k, v in tm.module.image_adapter.state_dict().items()}


@pytest.mark.parametrize("kind,features", [("base", (1, 32)), ("plus", (7, 64))])
def test_a_fresh_projection_is_the_identity(comfy, tiny_models, clip_vision, tmp_path, kind, features):
    _, base, tm = make_model(comfy, tiny_models, tmp_path, clip_vision[1], image_projection=kind,
                             clip_width=features[1])
    _, _, plain = make_model(comfy, tiny_models, tmp_path / "plain", clip_vision[1])
    assert plain.module.image_adapter is None and tm.module.image_adapter.kind == kind
    x, t, ctx, concat, _ = inputs()
    image = torch.randn(2, *features, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        tm.attach(torch.device("cpu"))
        ours = tm.module(x, t, ctx, concat, image)
        tokens = tm.module.image_adapter.tokens(image)
        tm.detach()
        plain.attach(torch.device("cpu"))
        ref = plain.module(x, t, ctx, concat)
        plain.detach()
    assert tokens.shape == (2, {"base": 4, "plus": 16}[kind], 768) and tokens.abs().max() > 0.1
    assert (ours - ref).abs().max().item() <= 1e-6
    assert all(v.abs().max() == 0 for k, v in adapter_params(tm).items() if k.startswith("to_"))


@pytest.mark.parametrize("train_projection", [True, False])
def test_one_step_trains_the_projection_only_when_asked(comfy, tiny_models, clip_vision, ip_files, clips, tmp_path,
                                                        train_projection):
    loop, setup = module("atomo_train.loop"), module("atomo_train.model_setup")
    dataset, null_text = clips
    cfg, base, tm = make_model(comfy, tiny_models, tmp_path, clip_vision[1], init={"ip_adapter": ip_files["base"][1]},
                               train_image_projection=train_projection)
    before, temporal_before = adapter_params(tm), tm.export().temporal
    base_before = setup.base_state(base)
    cfg = type(cfg).from_dict({**cfg.raw, "optim": {**cfg.raw["optim"], "max_steps": 1, "warmup_steps": 0}})
    result = loop.train(cfg, tm, dataset, null_text, accelerator=loop.make_accelerator(cfg, log=False),
                        progress_bar=False)
    tm.detach()
    after = adapter_params(tm)
    changed = {k: (after[k] - before[k]).abs().max().item() for k in before}
    assert set(changed) >= {"projection.proj.weight", "to_k_ip.0", "to_v_ip.0"}
    if train_projection:
        assert changed["projection.proj.weight"] > 1e-6 and changed["to_v_ip.0"] > 1e-6
        assert min(changed.values()) > 0  # every adapter tensor moved
    else:
        assert max(changed.values()) == 0
    temporal_after = tm.export().temporal
    site = next(iter(temporal_before))
    assert any(not torch.equal(temporal_before[site][k], temporal_after[site][k]) for k in temporal_before[site])
    base_after = setup.base_state(base)
    assert all(torch.equal(base_before[k], base_after[k]) for k in base_before)
    assert result.weights is not None


def test_written_image_projection_loads_through_the_node_and_gives_the_trained_output(
        comfy, tiny_models, clip_vision, ip_files, clips, tmp_path):
    import comfy.model_management as comfy_mm
    from safetensors import safe_open

    loop, ckpt = module("atomo_train.loop"), module("atomo_train.checkpoints")
    features_of = module("atomo_host.image_tokens").clip_features
    dataset, null_text = clips
    cfg, base, tm = make_model(comfy, tiny_models, tmp_path, clip_vision[1], init={"ip_adapter": ip_files["base"][1]})
    cfg = type(cfg).from_dict({**cfg.raw, "optim": {**cfg.raw["optim"], "max_steps": 2, "warmup_steps": 0}})
    loop.train(cfg, tm, dataset, null_text, accelerator=loop.make_accelerator(cfg, log=False), progress_bar=False)
    tm.detach()
    name = "trained_with_image_projection.safetensors"
    path = ckpt.write_weights(comfy.models_dir / "atomovideo" / name, tm.export(), {"step": 2})
    with safe_open(str(path), "pt") as f:
        keys = list(f.keys())
        proj_weight = f.get_tensor("image_proj.proj.weight")
    assert "image_proj.ip_adapter.1.to_k_ip.weight" in keys and "image_proj.norm.weight" in keys
    assert torch.equal(proj_weight, tm.module.image_adapter.projection.proj.weight.detach())

    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(5))
    features = features_of(clip_vision[0], image, "image_embeds").unsqueeze(1)
    x, t, ctx, concat, _ = inputs(3)
    loaded = comfy.call("AtomoVideoLoader", model=base.patcher, weights=name)[0]
    injected = comfy.call("AtomoVideoCLIPVisionInject", model=loaded, clip_vision=clip_vision[0], image=image,
                          projection="from AtomoVideo weights", weight=1.0, start_percent=0.0, end_percent=1.0)[0]
    comfy_mm.load_models_gpu([injected])
    to = dict(injected.model_options["transformer_options"], cond_or_uncond=[0, 0])
    with torch.no_grad():
        ref = injected.model.diffusion_model(torch.cat([x, concat], 1), t, context=ctx, transformer_options=to)
    comfy_mm.unload_all_models()
    tm.attach(torch.device("cpu"))
    with torch.no_grad():
        ours = tm.module(x, t, ctx, concat, features.expand(2, -1, -1))
        blank = tm.module(x, t, ctx, concat, torch.zeros_like(features).expand(2, -1, -1))
    tm.detach()
    assert (ours - ref).abs().max().item() <= 1e-5
    assert (ours - blank).abs().max().item() > 1e-3  # the image tokens matter


def loss_and_grads(tm, batch):
    x, t, ctx, concat, image = batch
    tm.attach(torch.device("cpu"))
    tm.module.zero_grad(set_to_none=True)
    pred = tm.module(x, t, ctx, concat, image)
    loss = (pred - torch.linspace(-1, 1, pred.numel()).view_as(pred)).pow(2).mean()
    loss.backward()
    grads = {k: p.grad.detach().clone() for k, p in tm.module.named_parameters() if p.grad is not None}
    tm.detach()
    return loss.item(), grads


def test_block_checkpointing_gives_the_same_loss_and_gradients_and_checkpoints_every_block(
        comfy, tiny_models, clip_vision, ip_files, tmp_path, monkeypatch):
    from comfy.ldm.modules.attention import SpatialTransformer
    from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock

    bc = module("atomo_train.block_checkpointing")
    init = {"ip_adapter": ip_files["base"][1]}
    _, base, plain = make_model(comfy, tiny_models, tmp_path, clip_vision[1], init=init)
    _, _, ckpt = make_model(comfy, tiny_models, tmp_path / "ckpt", clip_vision[1], init=init, checkpointing=True)
    ckpt.module.load_state_dict(plain.module.state_dict())
    with torch.no_grad():  # non-zero temporal outputs, so every trainable tensor gets a gradient
        for m in (plain.module, ckpt.module):
            for p in m.temporal.parameters():
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.02)
    batch = inputs(4)
    calls = []
    real = torch.utils.checkpoint.checkpoint

    def counting(fn, *args, **kwargs):
        calls.append(type(fn.block).__name__ if isinstance(fn, bc.CheckpointedBlock) else type(fn).__name__)
        return real(fn, *args, **kwargs)

    loss0, grads0 = loss_and_grads(plain, batch)
    assert not calls
    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", counting)
    loss1, grads1 = loss_and_grads(ckpt, batch)
    unet = base.patcher.model.diffusion_model
    n_res = sum(isinstance(m, ResBlock) for m in unet.modules())
    n_st = sum(isinstance(m, SpatialTransformer) for m in unet.modules())
    assert n_res >= 4 and n_st >= 4
    assert calls.count("ResBlock") == n_res and calls.count("SpatialTransformer") == n_st
    assert abs(loss0 - loss1) <= 1e-5
    assert grads0.keys() == grads1.keys() and len(grads0) == len(list(plain.module.parameters()))
    assert max((grads0[k] - grads1[k]).abs().max().item() for k in grads0) <= 1e-5
    assert max(v.abs().max().item() for k, v in grads0.items() if "image_adapter" in k) > 0
    # the object patches are undone: the base UNet's blocks are its own again
    assert not any(isinstance(m, bc.CheckpointedBlock) for m in unet.modules())


def test_cli_caches_clip_features_refuses_an_old_cache_and_writes_the_projection(
        comfy, tiny_models, clip_vision, tmp_path, monkeypatch, capsys):
    from safetensors import safe_open
    from train_clips import write_clip
    from train_helpers import toml_text

    cli, ip = module("atomo_train.cli"), module("atomo_train.image_projection")
    errors = module("atomo_train.errors")
    with pytest.raises(errors.ConfigError, match=r"'model.clip_vision'.*not a CLIP-vision model ComfyUI knows"):
        ip.load_clip_vision(clip_vision[1])  # the tiny model's file: the host detects only full-size ones
    monkeypatch.setattr(ip, "load_clip_vision", lambda path: clip_vision[0])
    for name in ("a", "b"):
        write_clip(tmp_path / "videos", name, frames=8, width=64, height=64)
    d = run_config(comfy, tiny_models["checkpoint"], tmp_path, optim={"max_steps": 2, "warmup_steps": 0},
                   validation={"every": 2, "clips": 1, "samples": 1, "steps": 2})
    plain = tmp_path / "plain.toml"
    plain.write_text(toml_text(d))
    assert cli.main(["cache", "--config", str(plain)]) == 0
    d["model"].update({"clip_vision": str(clip_vision[1]), "image_projection": "base"})
    with_image = tmp_path / "image.toml"
    with_image.write_text(toml_text(d))
    capsys.readouterr()
    assert cli.main(["train", "--config", str(with_image)]) == 2
    err = capsys.readouterr().err
    assert "data.cache_dir" in err and "models.clip_vision" in err and "rebuild" in err
    validation = module("atomo_train.validation")
    injected = []

    def counting_inject(*args, **kwargs):
        injected.append(args[3].projection)
        return real_inject(*args, **kwargs)
    real_inject = validation.inject
    monkeypatch.setattr(validation, "inject", counting_inject)
    assert cli.main(["train", "--config", str(with_image), "--rebuild-cache"]) == 0
    # validation samples (before the first step and at step 2) use the trained projection through the node's glue
    assert injected == ["from AtomoVideo weights"] * 2
    assert (tmp_path / "run" / "validation" / "step00000002_sample0.webp").is_file()
    cache_path = module("atomo_train.config").load_config(with_image).data.cache_path
    cached = module("atomo_train.data.dataset").CachedClips(cache_path)
    assert cached.has_image_tokens and cached[0]["image_tokens"].shape == (FRAMES, 1, 32)
    with safe_open(str(tmp_path / "run" / "atomovideo.safetensors"), "pt") as f:
        keys = set(f.keys())
        meta = f.metadata()["atomovideo"]
    assert {"image_proj.proj.weight", "image_proj.ip_adapter.1.to_v_ip.weight"} <= keys
    assert '"image_tokens": 4' in meta
