"""The trainer's model in the real ComfyUI: identity at init, trainable conv_in, written file == loader."""
from __future__ import annotations

from pack import module
import pytest
import torch

from train_helpers import FRAMES, run_config


@pytest.fixture(scope="session")
def train_setup(comfy):
    return module("atomo_train.model_setup")


@pytest.fixture(scope="session")
def train_config(comfy):
    return module("atomo_train.config")


def inputs(seed=0, clips=2, frames=FRAMES, size=8, extra=5):
    g = torch.Generator().manual_seed(seed)
    n = clips * frames
    return (torch.randn(n, 4, size, size, generator=g), torch.full((n,), 601.0),
            torch.randn(n, 77, 768, generator=g) * 0.5, torch.randn(n, extra, size, size, generator=g))


def test_fresh_initialisation_is_the_base_unet_frame_by_frame(comfy, tiny_models, train_setup, train_config,
                                                              tmp_path):
    cfg = train_config.TrainConfig.from_dict(run_config(comfy, tiny_models["checkpoint"], tmp_path))
    base = train_setup.load_base(cfg.model.checkpoint)
    weights = train_setup.initial_weights(cfg.model, cfg.init, train_setup.unet_layout(base.patcher))
    tm = train_setup.TrainerModel(base, weights, FRAMES)
    x, t, ctx, concat = inputs()
    unet = base.patcher.model.diffusion_model
    with torch.no_grad():
        ref = unet(x, t, context=ctx)
        tm.attach(torch.device("cpu"))
        out = tm.module(x, t, ctx, concat)
        tm.detach()
    assert out.shape == ref.shape == (2 * FRAMES, 4, 8, 8)
    assert (out - ref).abs().max().item() <= 1e-5
    assert ref.abs().max().item() > 1e-2
    # the trainable conv_in channels and temporal layers are really in the graph
    tm.attach(torch.device("cpu"))
    out = tm.module(x, t, ctx, concat)
    out.square().mean().backward()
    tm.detach()
    grads = {n: p.grad for n, p in tm.module.named_parameters()}
    assert grads["conv_in_extra"].abs().max() > 0
    to_out = [g for n, g in grads.items() if n.endswith("to_out.0.weight")]
    conv = [g for n, g in grads.items() if n.endswith("conv.weight")]
    assert to_out and conv and all(g.abs().max() > 0 for g in to_out + conv)
    assert not any(p.requires_grad for p in unet.parameters())


def randomize_(module, seed=7, scale=0.05):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (scale if p.ndim < 2 else 1.0 / p[0].numel() ** 0.5))


def test_written_file_loads_in_the_loader_and_gives_the_trainers_output(comfy, tiny_models, train_setup,
                                                                        train_config, tmp_path):
    import comfy.model_management as comfy_mm
    from comfy.patcher_extension import WrappersMP

    ckpt = module("atomo_train.checkpoints")
    cfg = train_config.TrainConfig.from_dict(run_config(comfy, tiny_models["checkpoint"], tmp_path))
    base = train_setup.load_base(cfg.model.checkpoint, vae=True)
    tm = train_setup.TrainerModel(base, train_setup.initial_weights(cfg.model, cfg.init,
                                                                    train_setup.unet_layout(base.patcher)), FRAMES)
    randomize_(tm.module)
    name = "trained_for_loader_test.safetensors"
    path = ckpt.write_weights(comfy.models_dir / "atomovideo" / name, tm.export(), {"step": 0})
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta, keys = f.metadata(), list(f.keys())
    assert '"prediction": "v"' in meta["atomovideo"] and '"zero_terminal_snr": true' in meta["atomovideo"]
    assert '"step": 0' in meta["atomovideo_training"]
    assert keys and all(k.startswith(("temporal.", "conv_in.extra_weight")) for k in keys)  # trainable keys only

    loaded = comfy.call("AtomoVideoLoader", model=base.patcher, weights=name)[0]
    captured = {}

    def capture(executor, x, timesteps, context, *args, **kwargs):
        out = executor(x, timesteps, context, *args, **kwargs)
        captured.update(x=x.clone(), t=timesteps.clone(), context=context.clone(), out=out.clone())
        return out

    loaded = loaded.clone()
    loaded.add_wrapper_with_key(WrappersMP.DIFFUSION_MODEL, "test", capture)
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(3))
    clip_model = comfy.load_checkpoint(tiny_models["checkpoint"])[1]
    pos, neg = comfy.encode(clip_model, "a red circle moves left"), comfy.encode(clip_model, "")
    pos, neg, latent = comfy.call("AtomoVideoImageConditioning", positive=pos, negative=neg, vae=base.vae,
                                  image=image, frames=FRAMES, width=64, height=64)
    comfy.ksample(loaded, pos, neg, latent, steps=2, cfg=1.0, sampler="euler", scheduler="simple")
    comfy_mm.unload_all_models()  # the loader's clone stays patched after sampling until unloaded
    x = captured["x"]
    assert x.shape == (FRAMES, 9, 8, 8) and x[0, 4].min() == 1 and x[1:, 4].abs().max() == 0  # mask on frame 0
    tm.attach(torch.device("cpu"))
    with torch.no_grad():
        ours = tm.module(x[:, :4], captured["t"], captured["context"], x[:, 4:])
    tm.detach()
    assert (ours - captured["out"]).abs().max().item() <= 1e-5
    assert (captured["out"] - base.patcher.model.diffusion_model(x[:, :4], captured["t"],
                                                                 context=captured["context"])).abs().max() > 1e-3
