"""Per-segment wall time and peak memory of AtomoVideoLongVideo (issue 5: memory flat, time linear in segments).

    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/long_video_segments.py [--segments 4] [--frames 16]
        [--context 4] [--size 64] [--steps 4] [--drift 0] [--warmup]

Runs the long-video loop (`atomo_host.continuation.run_long_video`, the node's own code) on the test fixture
model (SD1.5-detected tiny UNet with random AtomoVideo eps weights, real TAESD) in the real host, for
`--segments` segments of `--frames` frames with `--context` context frames. A segment ends when its frames are
decoded; its time runs from the end of the previous one (the first from the call). Peak memory per segment: on
CUDA `torch.cuda.max_memory_allocated` between segment ends (reset at each); on the CPU the highest resident set
size of the process, sampled every 2 ms by a thread, over the segment. With `--warmup` a short run first loads
the model, so segment 1 does not carry the one-off load. CPU time (`time.process_time`) is printed next to wall
time, as the wall time of a shared machine includes waiting for other processes. Prints a table and, for `--check`, exits 1 unless
segment N's peak is within 10% of segment 1's.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_host import rss_bytes

HERE = Path(__file__).resolve().parent


class RssPeak:
    """Highest RSS since the last `reset()`, sampled by a background thread."""

    def __init__(self, interval=0.002):
        self.interval, self.peak, self._stop = interval, rss_bytes(), False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop:
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.interval)

    def reset(self) -> int:
        peak, self.peak = max(self.peak, rss_bytes()), rss_bytes()
        return peak

    def stop(self):
        self._stop = True
        self._thread.join()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--segments", type=int, default=4)
    ap.add_argument("--frames", type=int, default=16, help="segment_frames")
    ap.add_argument("--context", type=int, default=4, help="context_frames")
    ap.add_argument("--size", type=int, default=64, help="width = height in pixels")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--drift", type=float, default=0.0, help="drift_strength (0: latent hand-over)")
    ap.add_argument("--warmup", action="store_true", help="load the model with a short run first")
    ap.add_argument("--check", action="store_true", help="exit 1 unless the last peak is within 10%% of the first")
    args = ap.parse_args()

    import torch

    import fixture_models
    from comfy_host import ComfyHost, find_comfyui
    from pack import run_long_video

    host = ComfyHost(find_comfyui(), Path(tempfile.mkdtemp(prefix="atomo-bench-")))
    names = fixture_models.write_all(host, HERE.parent.parent / "shared" / "models")
    model, clip, vae = host.load_checkpoint(names["checkpoint"])
    weights = fixture_models.write_atomovideo_fixtures(host, model)["random"]
    model = host.call("AtomoVideoLoader", model=model, weights=weights)[0]
    pos, neg = host.encode(clip, "a boat on a lake"), host.encode(clip, "")
    L, k, S = args.frames, args.context, args.segments
    total = L + (S - 1) * (L - k)
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, args.size, args.size, 3, generator=g)
    cuda = torch.cuda.is_available()
    common = dict(model=model, positive=pos, negative=neg, vae=vae, width=args.size, height=args.size,
                  segment_frames=L, context_frames=k, seed=0, steps=args.steps, cfg=7.5, cfg_rescale=0.0,
                  sampler_name="euler", scheduler="simple", pin_context=True, drift_strength=args.drift,
                  image=image, decode_batch=16)
    with torch.inference_mode():
        if args.warmup:
            run_long_video(host, {"total_frames": L, **common})

        marks = []  # (segment index, wall seconds, process CPU seconds, peak bytes)
        rss = None if cuda else RssPeak()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated() if cuda else rss_bytes()
        last = [time.perf_counter(), time.process_time()]

        def on_segment(info):  # called once per segment, when its frames are decoded
            if cuda:
                torch.cuda.synchronize()
                peak = torch.cuda.max_memory_allocated()
                torch.cuda.reset_peak_memory_stats()
            else:
                peak = rss.reset()
            now, cpu = time.perf_counter(), time.process_time()
            marks.append((info.segment.index, now - last[0], cpu - last[1], peak))
            last[0], last[1] = time.perf_counter(), time.process_time()

        start = time.perf_counter()
        video = run_long_video(host, {"total_frames": total, **common}, on_segment)
        wall = time.perf_counter() - start
        if rss is not None:
            rss.stop()

    device = torch.cuda.get_device_name() if cuda else "CPU"
    kind = "max_memory_allocated" if cuda else "peak RSS"
    print(f"device {device}; {S} segments x {L} frames (context {k}) at {args.size}x{args.size}, {args.steps} "
          f"steps, drift_strength {args.drift}; {total} frames out, shape {tuple(video.shape)}")
    print(f"baseline ({'allocated' if cuda else 'RSS'}) before the run: {baseline / 2**20:.1f} MiB")
    print(f"{'segment':>8} {'wall s':>8} {'cpu s':>8} {kind + ' MiB':>26} {'vs seg 1':>9} {'rise MiB':>9} "
          f"{'vs seg 1':>9}")
    first_rise = max(1, marks[0][3] - baseline)
    for index, seconds, cpu, peak in marks:
        rise = peak - baseline
        print(f"{index + 1:>8} {seconds:>8.2f} {cpu:>8.2f} {peak / 2**20:>26.1f} {peak / marks[0][3]:>9.3f} "
              f"{rise / 2**20:>9.1f} {rise / first_rise:>9.3f}")
    print("(rise: peak minus the baseline; wall time includes waiting for other processes' use of the cores, "
          "cpu time is this process's)")
    times = [t for _, t, _, _ in marks]
    print(f"total {wall:.2f} s; mean per segment {sum(times) / len(times):.2f} s; segments 2..{S} mean "
          f"{sum(times[1:]) / max(1, len(times) - 1):.2f} s")
    ratio = marks[-1][3] / marks[0][3]
    print(f"peak of segment {S} / segment 1: {ratio:.3f} (goal <= 1.10)")
    if args.check and ratio > 1.10:
        sys.exit(1)


if __name__ == "__main__":
    main()
