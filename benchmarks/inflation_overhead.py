"""Cost of the temporal layers: inflated/base sampler-step time and peak memory at 16 frames.

    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/inflation_overhead.py [--size 64] [--frames 16] [--repeats 5]

Both configurations run in this invocation, each in its own fresh process (so neither inherits the other's
allocator state), on the test fixture model (SD1.5-detected UNet, 320 channels, two levels). Time is the
median of `--repeats` sampler steps after one warm-up step. Peak memory on CUDA is
`torch.cuda.max_memory_allocated` over the step; on the CPU it is the UNet's parameter bytes plus the rise of
the process's peak resident memory during the steps (what the step allocates on top of what was resident).
FLOPs (matmul, convolution, attention; elementwise work is not counted) are counted once per configuration
with torch's FlopCounterMode, a load-independent companion to the timing on a shared machine.
Goal (issue 2): time ratio <= 1.25, memory ratio <= 1.15.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_host import rss_bytes

HERE = Path(__file__).resolve().parent


def measure(config: str, size: int, frames: int, repeats: int) -> dict:
    import torch

    import fixture_models
    from comfy_host import ComfyHost, find_comfyui

    host = ComfyHost(find_comfyui(), Path(tempfile.mkdtemp(prefix="atomo-bench-")))
    names = fixture_models.write_all(host, HERE.parent.parent / "shared" / "models")
    model, clip, _ = host.load_checkpoint(names["checkpoint"])
    if config == "inflated":
        weights = fixture_models.write_atomovideo_fixtures(host, model)["fresh"]
        model = host.call("AtomoVideoLoader", model=model, weights=weights, noise_schedule="keep model's")[0]
    pos, neg = host.encode(clip, "a boat on a lake"), host.encode(clip, "")
    latent = {"samples": torch.randn(frames, 4, size, size, generator=torch.Generator().manual_seed(0))}

    def step():
        return host.ksample(model, pos, neg, latent, steps=1, cfg=2.0, disable_noise=True, denoise=0.5)

    step()  # warm-up: loads and patches the model
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as flops:  # matmul/conv/attention FLOPs: independent of machine load
        step()
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before_rss = rss_bytes()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    # The UNet's parameters plus the temporal layers', each counted once (while the clone is applied, the
    # live UNet already holds them).
    unet = model.model.diffusion_model
    patched = [m for k, m in model.object_patches.items() if k.startswith("diffusion_model.")]
    unique = {id(p): p for p in unet.parameters()}
    unique.update({id(p): p for blk in patched for p in blk.parameters()})
    params = sum(p.numel() * p.element_size() for p in unique.values())
    if cuda:
        peak = torch.cuda.max_memory_allocated()
    else:
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        peak = params + max(0, peak_rss - before_rss)
    return {"config": config, "step_s": statistics.median(times), "peak_bytes": peak, "param_bytes": params,
            "device": "cuda" if cuda else "cpu", "flops": flops.get_total_flops()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=64, help="latent side (64 = 512 px)")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--one", choices=["base", "inflated"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print("RESULT " + json.dumps(measure(a.one, a.size, a.frames, a.repeats)))
        return
    results = {}
    for config in ("base", "inflated"):
        proc = subprocess.run([sys.executable, __file__, "--one", config, "--size", str(a.size),
                               "--frames", str(a.frames), "--repeats", str(a.repeats)],
                              capture_output=True, text=True)
        line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            sys.exit(f"{config} run failed:\n{proc.stderr[-3000:]}")
        results[config] = json.loads(line[len("RESULT "):])
    b, i = results["base"], results["inflated"]
    print(f"device {b['device']}, {a.frames} frames, latent {a.size}x{a.size}, cfg 2 (batch {2 * a.frames})")
    for r in (b, i):
        print(f"  {r['config']:9s} step {r['step_s'] * 1000:8.1f} ms   peak {r['peak_bytes'] / 2**20:8.1f} MiB"
              f"   params {r['param_bytes'] / 2**20:7.1f} MiB")
    print(f"time ratio   {i['step_s'] / b['step_s']:.3f}  (goal <= 1.25)")
    print(f"FLOP ratio   {i['flops'] / b['flops']:.3f}  (matmul/conv/attention FLOPs per step; not affected by load)")
    print(f"memory ratio {i['peak_bytes'] / b['peak_bytes']:.3f}  (goal <= 1.15)")


if __name__ == "__main__":
    main()
