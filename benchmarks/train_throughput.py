"""Training throughput: samples/s (clips per second) and peak memory of one optimizer step at 16 frames.

    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/train_throughput.py [--size 64] [--frames 16] [--steps 3]
        [--base tiny|sd15] [--checkpointing]

`--base tiny` (default) is the test fixture (SD1.5-detected UNet, 320 channels, two levels); `--base sd15` builds a
random UNet of the full SD1.5 shape (860M parameters) for GPU numbers at 256 and 512 px. One step = the trainer's
forward (inflated UNet, 9-channel input), v loss, backward, AdamW step, with one clip of `--frames` frames; bf16
autocast on CUDA, fp32 on the CPU. Time is the median over `--steps` steps after one warm-up step. Peak memory:
`torch.cuda.max_memory_allocated` on CUDA; on the CPU, parameter bytes plus the rise of resident memory during a
timed step above the resident memory before it (sampled every millisecond, `bench_host.PeakRSS`).
`--checkpointing` checkpoints the temporal layers and the frozen ResBlocks / SpatialTransformers
(model.gradient_checkpointing). Also printed: the activations one forward pass keeps for the backward pass
(tensors saved by autograd, parameters excluded, each storage once): the memory checkpointing saves, measured
exactly on any device.
"""
from __future__ import annotations

import argparse
import importlib
import statistics
import tempfile
import time
from pathlib import Path

from bench_host import PeakRSS

HERE = Path(__file__).resolve().parent
SD15_UNET = {"use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
             "legacy": False, "adm_in_channels": None, "in_channels": 4, "model_channels": 320,
             "num_res_blocks": [2, 2, 2, 2], "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
             "channel_mult": [1, 2, 4, 4], "transformer_depth_middle": 1, "use_linear_in_transformer": False,
             "context_dim": 768, "num_heads": 8,
             "transformer_depth_output": [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1],
             "use_temporal_attention": False, "use_temporal_resblock": False}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=64, help="pixels (latent = size/8)")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--base", choices=("tiny", "sd15"), default="tiny")
    ap.add_argument("--checkpointing", action="store_true")
    a = ap.parse_args()

    import torch
    import fixture_models
    from comfy_host import ComfyHost, find_comfyui

    host = ComfyHost(find_comfyui(), Path(tempfile.mkdtemp(prefix="atomo-train-bench-")))
    if a.base == "tiny":
        names = fixture_models.write_all(host, HERE.parent.parent / "shared" / "models")
        ckpt = host.models_dir / "checkpoints" / names["checkpoint"]
    else:
        fixture_models.TINY_UNET_CONFIG.clear()
        fixture_models.TINY_UNET_CONFIG.update(SD15_UNET)
        names = fixture_models.write_all(host, HERE.parent.parent / "shared" / "models")
        ckpt = host.models_dir / "checkpoints" / names["checkpoint"]
    pack = host.pack.__name__
    config = importlib.import_module(f"{pack}.atomo_train.config")
    setup = importlib.import_module(f"{pack}.atomo_train.model_setup")
    cfg = config.TrainConfig.from_dict({"data": {"path": ".", "frames": a.frames, "size": max(64, a.size)},
                                        "model": {"checkpoint": str(ckpt), "max_frames": a.frames,
                                                  "gradient_checkpointing": a.checkpointing}})
    base = setup.load_base(cfg.model.checkpoint)
    weights = setup.initial_weights(cfg.model, cfg.init, setup.unet_layout(base.patcher), cfg.optim.seed)
    tm = setup.TrainerModel(base, weights,
                            a.frames, checkpointing=a.checkpointing)
    device = setup.compute_device()
    tm.attach(device)
    opt = torch.optim.AdamW(tm.module.parameters(), lr=1e-5)
    h = a.size // 8
    g = torch.Generator().manual_seed(0)
    x, v = (torch.randn(a.frames, 4, h, h, generator=g).to(device) for _ in range(2))
    concat = torch.randn(a.frames, 5, h, h, generator=g).to(device)
    ctx = torch.randn(a.frames, 77, 768, generator=g).to(device)
    t = torch.full((a.frames,), 500.0, device=device)
    cuda = device.type == "cuda"

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            pred = tm.module(x, t, ctx, concat)
        loss = (pred.float() - v).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()

    step()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times, rise = [], 0
    for _ in range(a.steps):
        t0 = time.perf_counter()
        with PeakRSS() as probe:
            step()
        times.append(time.perf_counter() - t0)
        rise = max(rise, probe.rise)
    unet_bytes = sum(p.numel() * p.element_size() for p in base.patcher.model.diffusion_model.parameters())
    if cuda:
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = unet_bytes + rise
    kept = saved_activation_bytes(lambda: tm.module(x, t, ctx, concat), tm, cuda)
    trainable = sum(p.numel() for p in tm.module.parameters())
    s = statistics.median(times)
    print(f"device {device}, base {a.base}, {a.frames} frames at {a.size} px, checkpointing {a.checkpointing}")
    print(f"  step {s:.3f} s   {1 / s:.3f} samples/s ({a.frames / s:.1f} frames/s)   peak {peak / 2**20:.0f} MiB"
          f"   trainable {trainable / 1e6:.1f} M parameters   activations kept for backward {kept / 2**20:.0f} MiB")
    tm.detach()


def saved_activation_bytes(forward, tm, cuda: bool) -> int:
    """Bytes of the distinct non-parameter tensors autograd keeps from one forward pass for the backward pass."""
    import torch

    params = {p.untyped_storage().data_ptr() for p in tm.base.patcher.model.parameters()}
    params |= {p.untyped_storage().data_ptr() for p in tm.module.parameters()}
    seen: dict = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            pred = forward()
    pred.float().pow(2).mean().backward()
    tm.module.zero_grad(set_to_none=True)
    return sum(seen.values())


if __name__ == "__main__":
    main()
