"""Base UNet vs AnimateDiff-Evolved vs AtomoVideoLoader on the same AnimateDiff file, side by side in one process.

    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/vs_animatediff_evolved.py [--frames 16] [--size 256]
        [--formats v2,v3] [--rounds 3] [--steps 2] [--threads N] [--profile]

A full-size SD1.5 UNet with random values (built in memory, as the equivalence test does) and a synthetic
full-size AnimateDiff file of each format (the released files' keys and shapes, random values) run through
KSampler (euler, `--steps` steps, cfg 1, seeded full noise) three ways: the plain model ("base"),
AnimateDiff-Evolved 1.5.6's `ADE_AnimateDiffLoaderGen1` (found like the tests find it: ATOMO_ADE_PATH or
../shared/peers/) and `AtomoVideoLoader`. The configurations run interleaved (the order rotates every round) for
`--rounds` rounds after one warm-up round, so a load change on a shared machine hits all of them alike.

Per configuration it prints medians over the rounds of
- step: time of one UNet call (a DIFFUSION_MODEL wrapper times every call; one call per step at cfg 1): on the
  CPU the CPU time of the call (the calling thread's with `--threads 1`, else the process's), which other
  processes on a shared machine disturb far less than wall time (printed too); on CUDA wall time,
- run cpu/step: the process CPU time of one sampling run divided by its steps (includes the run's
  patch/unpatch work),
- peak: on CUDA `max_memory_allocated` during the run; on the CPU the rise of the resident set size during the
  run (sampled every millisecond) plus the bytes of the weights the configuration runs (UNet + its modules);
and the FLOPs of one UNet call (matmul, convolution, attention; FlopCounterMode), with the motion modules'
added-FLOP ratio also counted from the layer shapes (44*T*C^2 + 8*T*F*C per module, T tokens, C channels,
F frames). Ratios: AtomoVideo/ADE (time, peak), and time over base against the added-FLOP ratio.
`--profile` prints torch.profiler's top operators of one UNet call per configuration.

`--modules` times one motion module alone instead, at each of the UNet's four levels (channels and latent side
as in SD1.5 at `--size`): ours (`TemporalAttention`) against AnimateDiff-Evolved's `TemporalTransformer3DModel`
with the same random weights, interleaved, CPU time of the calling thread (use `--threads 1`), minimum of 4.
"""
from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

import bench_host  # noqa: F401  (tests/ on sys.path)
from bench_host import PeakRSS

HERE = Path(__file__).resolve().parent
SHARED_MODELS = HERE.parent.parent / "shared" / "models"
SD15_STRUCTURE = {"num_res_blocks": [2, 2, 2, 2], "channel_mult": [1, 2, 4, 4],
                  "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
                  "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]}
FORMATS = {"v2": "animatediff_v2", "v3": "animatediff_v3"}
CONFIGS = ("base", "ade", "atomo")
TIMER_KEY = "atomo_bench_timer"


def full_sd15(host, fixture_models):
    import comfy.ops
    import comfy.sd as host_sd
    import torch
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    cfg = dict(fixture_models.TINY_UNET_CONFIG, **SD15_STRUCTURE)
    with torch.device("meta"):
        unet = UNetModel(**cfg, operations=comfy.ops.disable_weight_init)
    shapes = {k: torch.empty(v.shape, dtype=torch.float32) for k, v in unet.state_dict().items()}
    del unet
    return host_sd.load_diffusion_model_state_dict(fixture_models.fill_random_(shapes, seed=11))


def module_flops(channels: int, tokens: int, frames: int) -> int:
    """Matmul FLOPs of one AnimateDiff motion module: proj_in/out 4TC^2, two attention blocks (q, k, v, out:
    8TC^2 each; scores and weighted sum 4TFC each), GEGLU feed-forward C->8C->(4C)->C 24TC^2."""
    return 44 * tokens * channels ** 2 + 8 * tokens * frames * channels


class CallTimer:
    """DIFFUSION_MODEL wrapper: wall time of every UNet call, and an optional one-shot profiler/FLOP hook."""

    def __init__(self):
        self.times: list = []   # wall seconds per call
        self.cpu: list = []     # CPU seconds per call: this thread's with one torch thread, else the process's
        self.hook = None

    def __call__(self, executor, *args, **kwargs):
        import torch

        if self.hook is not None:
            hook, self.hook = self.hook, None
            return hook(lambda: executor(*args, **kwargs))
        clock = time.thread_time if torch.get_num_threads() == 1 else time.process_time
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t, c = time.perf_counter(), clock()
        out = executor(*args, **kwargs)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - t)
        self.cpu.append(clock() - c)
        return out

    def __deepcopy__(self, memo):
        return self


def param_bytes(modules) -> int:
    """Bytes of the parameters of `modules`, each tensor counted once."""
    seen = {id(p): p for m in modules for p in m.parameters()}
    return sum(p.numel() * p.element_size() for p in seen.values())


def time_modules(host, a) -> None:
    import torch
    from ade_helpers import ade_module

    import comfy.ops

    ours_cls = host.pack_module("atomo_core.temporal_layers").TemporalAttention
    theirs_cls = ade_module("animatediff.motion_module_ad").TemporalTransformer3DModel
    clock = time.thread_time if torch.get_num_threads() == 1 else time.process_time
    print(f"one motion module, {a.frames} frames, batch of one video, CPU seconds (min of 4), threads "
          f"{torch.get_num_threads()}")
    g = torch.Generator().manual_seed(0)
    for level, channels in enumerate((320, 640, 1280, 1280)):
        side = -(-(a.size // 8) // 2 ** level)
        ours = ours_cls(channels, heads=8, max_frames=32, attention_blocks=2, feed_forward=True)
        theirs = theirs_cls(in_channels=channels, num_attention_heads=8, attention_head_dim=channels // 8,
                            num_layers=1, temporal_pe=True, temporal_pe_max_len=32, ops=comfy.ops.disable_weight_init)
        sd = {k: v if k.endswith("pe") else (torch.randn(v.shape, generator=g) / v.shape[-1] ** 0.5 if v.ndim == 2
                                            else 1 + 0.05 * torch.randn(v.shape, generator=g))
              for k, v in ours.state_dict().items()}
        ours.load_state_dict(sd)
        theirs.load_state_dict(sd)
        theirs.set_video_length(a.frames, a.frames)
        x = torch.randn(a.frames, channels, side, side, generator=g)
        times = {"ours": [], "ade": []}
        with torch.no_grad():
            diff = (ours(x, a.frames) - theirs(x)).abs().max().item()
            for _ in range(4):
                for name, run in (("ours", lambda: ours(x, a.frames)), ("ade", lambda: theirs(x))):
                    t = clock()
                    run()
                    times[name].append(clock() - t)
        o, t = min(times["ours"]), min(times["ade"])
        print(f"  level {level}: {channels:4d} channels, {side:3d}x{side:<3d} ours {o:7.3f} s  ADE {t:7.3f} s  "
              f"ratio {o / t:.3f}   max |difference| {diff:.2g}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=256, help="width = height in pixels (latent side = size / 8)")
    ap.add_argument("--formats", default="v2,v3", help="comma-separated: v2, v3")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    ap.add_argument("--profile", action="store_true", help="print the top operators of one UNet call each")
    ap.add_argument("--modules", action="store_true", help="time single motion modules per level (see above)")
    a = ap.parse_args()

    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    import fixture_models
    from ade_helpers import load_ade, synthetic_state_dict
    from comfy_host import ComfyHost, find_comfyui
    from safetensors.torch import save_file

    comfy_path = find_comfyui()
    if comfy_path is None:
        sys.exit("no ComfyUI found: set COMFYUI_PATH")
    host = ComfyHost(comfy_path, Path(tempfile.mkdtemp(prefix="atomo-vs-ade-")))
    reason = load_ade(host)
    if reason:
        sys.exit(reason)
    import comfy.model_management as mm
    import comfy.patcher_extension as pe
    from torch.utils.flop_counter import FlopCounterMode

    if a.modules:
        return time_modules(host, a)

    names = fixture_models.write_all(host, SHARED_MODELS)
    _, clip, _ = host.load_checkpoint(names["checkpoint"])
    pos, neg = host.encode(clip, "a boat on a lake"), host.encode(clip, "")
    del clip
    model = full_sd15(host, fixture_models)
    unet_bytes = param_bytes([model.model.diffusion_model])  # before any clone's object patches are applied
    side = a.size // 8
    latent = {"samples": torch.zeros(a.frames, 4, side, side)}
    cuda = torch.cuda.is_available()
    print(f"device {'cuda' if cuda else 'cpu'}, threads {torch.get_num_threads()}, {a.frames} frames at "
          f"{a.size}x{a.size} px (latent {side}x{side}), {a.steps} euler steps, cfg 1, {a.rounds} rounds")

    for fmt in a.formats.split(","):
        file_name = f"atomo_bench_{fmt}.safetensors"
        sd = synthetic_state_dict(FORMATS[fmt], device="cpu", seed=21)
        save_file({k: v.contiguous() for k, v in sd.items()}, str(host.models_dir / "animatediff_models" / file_name))
        del sd
        models, timers = {}, {}
        for config in CONFIGS:
            if config == "base":
                m = model.clone()
            elif config == "ade":
                m = host.call("ADE_AnimateDiffLoaderGen1", model=model, model_name=file_name,
                              beta_schedule="autoselect")[0].clone()
            else:
                m = host.call("AtomoVideoLoader", model=model, weights=file_name)[0].clone()
            timers[config] = CallTimer()
            m.add_wrapper_with_key(pe.WrappersMP.DIFFUSION_MODEL, TIMER_KEY, timers[config])
            models[config] = m

        def sample(config):
            return host.ksample(models[config], pos, neg, latent, seed=1, steps=a.steps, cfg=1.0)["samples"]

        extra = {}
        for config in CONFIGS:  # warm-up round (loads, patches; its first UNet call counts FLOPs), optional profile
            counter = FlopCounterMode(display=False)

            def count(run, counter=counter):
                with counter:
                    return run()
            timers[config].hook = count
            sample(config)
            extra[config] = {"flops": counter.get_total_flops()}
            if a.profile:
                from torch.profiler import ProfilerActivity, profile

                prof = profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else []))

                def profiled(run, prof=prof):
                    with prof:
                        return run()
                timers[config].hook = profiled
                sample(config)
                print(f"\n{fmt} {config}: one UNet call")
                print(prof.key_averages().table(sort_by="self_cuda_time_total" if cuda else "self_cpu_time_total",
                                                row_limit=15))
            timers[config].times.clear()
            timers[config].cpu.clear()

        cpu = {c: [] for c in CONFIGS}
        peak = {c: [] for c in CONFIGS}
        outputs = {}
        for r in range(a.rounds):
            order = CONFIGS[r % 3:] + CONFIGS[:r % 3]
            for config in order:
                gc.collect()
                if cuda:
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                c0 = time.process_time()
                with PeakRSS() as probe:
                    outputs[config] = sample(config)
                cpu[config].append((time.process_time() - c0) / a.steps)
                peak[config].append(torch.cuda.max_memory_allocated() if cuda else probe.rise)

        # weights each configuration runs with: the UNet, plus ADE's motion model or our temporal layers
        layer_type = host.pack_module("atomo_core.temporal_layers").TemporalLayer
        atomo_layers = [c for k, blk in models["atomo"].object_patches.items() if k.startswith("diffusion_model.")
                        for c in blk.children() if isinstance(c, layer_type)]
        ade_layers = [p.model for p in models["ade"].get_additional_models()]
        wbytes = {"base": unet_bytes, "atomo": unet_bytes + param_bytes(atomo_layers),
                  "ade": unet_bytes + param_bytes(ade_layers)}

        # motion modules' FLOPs from the layer shapes: each module sees frames*side^2 tokens at its level
        mm_flops = 0
        channels = {0: 320, 1: 640, 2: 1280, 3: 1280}
        for level in range(4):
            tokens = a.frames * (-(-side // 2 ** level)) ** 2  # stride-2 convs with padding: ceil
            mm_flops += (2 + 3) * module_flops(channels[level], tokens, a.frames)  # 2 down + 3 up per level
        if fmt == "v2":
            mm_flops += module_flops(1280, a.frames * (-(-side // 8)) ** 2, a.frames)

        # step time: CPU seconds per UNet call on the CPU (robust to other processes), wall seconds on CUDA
        med = {c: statistics.median(timers[c].times if cuda else timers[c].cpu) for c in CONFIGS}
        print(f"\n== AnimateDiff {fmt} ({len(timers['base'].times) // a.rounds} UNet calls per run) ==")
        for c in CONFIGS:
            pk = statistics.median(peak[c]) + (0 if cuda else wbytes[c])
            print(f"  {c:6s} step {med[c]:8.3f} s   wall/call {statistics.median(timers[c].times):8.3f} s   "
                  f"run cpu/step {statistics.median(cpu[c]):8.3f} s   peak {pk / 2**20:9.1f} MiB "
                  f"(rise {statistics.median(peak[c]) / 2**20:.1f} + weights {wbytes[c] / 2**20:.1f})   "
                  f"GFLOP/call {extra[c]['flops'] / 1e9:9.1f}")
            extra[c]["peak"] = pk
        shape_ratio = (extra["base"]["flops"] + mm_flops) / extra["base"]["flops"]
        counted_ratio = extra["atomo"]["flops"] / extra["base"]["flops"]
        diff = (outputs["atomo"] - outputs["ade"]).abs().max().item()
        print(f"  AtomoVideo / ADE  step time {med['atomo'] / med['ade']:.3f}   cpu {statistics.median(cpu['atomo']) / statistics.median(cpu['ade']):.3f}"
              f"   peak memory {extra['atomo']['peak'] / extra['ade']['peak']:.3f}")
        print(f"  time over base: AtomoVideo {med['atomo'] / med['base']:.3f}, ADE {med['ade'] / med['base']:.3f}; "
              f"added-FLOP ratio {shape_ratio:.3f} from layer shapes ({counted_ratio:.3f} counted); "
              f"AtomoVideo time ratio / FLOP ratio {med['atomo'] / med['base'] / shape_ratio:.3f}")
        print(f"  max |AtomoVideo - ADE| of the sampled latents {diff:.3g} (|x| max {outputs['ade'].abs().max():.3g})")
        del models, atomo_layers, ade_layers, outputs
        mm.unload_all_models()
        gc.collect()
        (host.models_dir / "animatediff_models" / file_name).unlink()


if __name__ == "__main__":
    main()
