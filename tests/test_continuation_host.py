"""Frame continuation in the real ComfyUI: AtomoVideoLongVideo (exact frame count, pinned seams, one progress bar,
drift control, interruption), AtomoVideoContinue + AtomoVideo Sampler + AtomoVideoJoinSegments by hand, and the
refusals. Tiny fixture model (random eps AtomoVideo weights), 64x64 px, segments of 4 frames, 2 steps."""
from __future__ import annotations

import math

import pytest
import torch

import fixture_models
from pack import run_long_video

LONG, CONTINUE, JOIN = "AtomoVideoLongVideo", "AtomoVideoContinue", "AtomoVideoJoinSegments"
SIZE, L, K, STEPS = 64, 4, 2, 2
N = L + 3 * (L - K)  # 4 segments: 4 + 2 + 2 + 2 = 10 frames


def picture(seed: int, size: int = SIZE) -> torch.Tensor:
    """A smooth synthetic picture [1, size, size, 3]."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    chans = []
    for _ in range(3):
        fx, fy, ph = (torch.rand(3, generator=g) * torch.tensor([3.0, 3.0, 6.28])).tolist()
        chans.append(0.5 + 0.3 * torch.sin(2 * math.pi * (fx * x + fy * y) + ph))
    return torch.stack(chans, -1)[None].clamp(0, 1)


@pytest.fixture(scope="module")
def setup(comfy, tiny_models, atomo_weights):
    model, clip, vae = comfy.load_checkpoint(tiny_models["checkpoint"])
    inflated = comfy.call("AtomoVideoLoader", model=model, weights=atomo_weights["random"])[0]
    return {"base": model, "model": inflated, "vae": vae, "pos": comfy.encode(clip, "a boat on a lake"),
            "neg": comfy.encode(clip, "")}


def long_kwargs(setup, **over):
    kw = dict(model=setup["model"], positive=setup["pos"], negative=setup["neg"], vae=setup["vae"], width=SIZE,
              height=SIZE, total_frames=N, segment_frames=L, context_frames=K, seed=3, steps=STEPS, cfg=1.0,
              cfg_rescale=0.0, sampler_name="euler", scheduler="simple", pin_context=True, drift_strength=0.0,
              image=picture(0), decode_batch=16)
    kw.update(over)
    return kw


class ProgressHook:
    """Records ComfyUI progress-bar updates; optionally interrupts once a value is passed (as a user would)."""

    def __init__(self, interrupt_after: int | None = None):
        self.updates, self.interrupt_after = [], interrupt_after

    def __call__(self, value, total, preview, node_id=None, **kw):
        import comfy.model_management as mm

        self.updates.append((value, total))
        if self.interrupt_after is not None and value > self.interrupt_after:
            mm.interrupt_current_processing()


def with_hook(hook, fn):
    import comfy.utils as cu

    before = cu.PROGRESS_BAR_HOOK
    cu.set_progress_bar_global_hook(hook)
    try:
        return fn()
    finally:
        cu.set_progress_bar_global_hook(before)


def run(comfy, setup, on_segment=None, hook=None, **over):
    return with_hook(hook or ProgressHook(), lambda: run_long_video(comfy, long_kwargs(setup, **over), on_segment))


@pytest.fixture(scope="module")
def plain(comfy, setup):
    """A 4-segment run, drift control off (latent hand-over), pinned, with everything recorded."""
    infos, hook = [], ProgressHook()
    video = run(comfy, setup, on_segment=infos.append, hook=hook)
    return video, infos, [i.kept for i in infos], hook


def test_four_segments_give_exactly_the_requested_frames_with_pinned_seams(plain, setup):
    video, runs, kept, hook = plain
    assert video.shape == (N, SIZE, SIZE, 3) and torch.isfinite(video).all()
    assert [r.segment.index for r in runs] == [0, 1, 2, 3]
    assert all(r.latents.shape == (L, 4, SIZE // 8, SIZE // 8) for r in runs)
    # The start image is given (and pinned) at frame 0 of segment 1.
    first = runs[0]
    assert first.mask[:, 0, 0, 0].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert torch.equal(first.latents[0], first.cond_latent[0])
    # pinning holds the given frames while sampling: before they are put back exactly, only float round-off
    for r in runs:
        bound = 1e-5 * r.cond_latent.abs().max().item()
        assert r.pin_error is not None and r.pin_error <= bound, (r.pin_error, bound)
    for prev, cur in zip(runs, runs[1:]):
        # context: the previous run's last K latents at positions 0..K-1, mask 1 there, 0 elsewhere
        assert cur.mask[:, 0, 0, 0].tolist() == [1.0] * K + [0.0] * (L - K)
        assert torch.equal(cur.cond_latent[:K], prev.latents[L - K:])
        # pinned: the seam frames come out exactly as given (latent space)
        assert torch.equal(cur.latents[:K], prev.latents[L - K:])
        assert not torch.equal(cur.latents[K:], prev.latents[:L - K])  # new frames really are new
    # The video is segment 1 whole, then each later segment's new frames: nothing repeated or missing.
    assert [p.shape[0] for p in kept] == [L, L - K, L - K, L - K]
    assert torch.equal(video, torch.cat(kept))
    diffs = (video[1:] - video[:-1]).abs().flatten(1).amax(1)
    assert (diffs > 0).all(), "a frame is repeated"
    # One progress bar over all segments' steps, advancing monotonically to the end.
    assert {t for _, t in hook.updates} == {4 * STEPS}
    assert [v for v, _ in hook.updates] == list(range(1, 4 * STEPS + 1))


def test_drift_off_is_bit_identical_to_chaining_continue_sampler_by_hand(comfy, plain, setup):
    _, runs, _, _ = plain
    model, pos, neg, vae = setup["model"], setup["pos"], setup["neg"], setup["vae"]
    cpos, cneg, lat = comfy.call("AtomoVideoImageConditioning", positive=pos, negative=neg, vae=vae,
                                 image=picture(0), frames=L, width=SIZE, height=SIZE, frame_indices="0")
    mask = cpos[0][1]["model_conds"]["atomo_mask"].cond
    lat = {"samples": cpos[0][1]["model_conds"]["atomo_image"].cond.clone(), "noise_mask": 1.0 - mask}
    segments = []
    for i in range(4):
        if i:
            cpos, cneg, lat = comfy.call(CONTINUE, model=model, positive=pos, negative=neg, vae=vae,
                                         context_frames=K, new_frames=L - K, pin_context=True,
                                         latent={"samples": segments[-1]})
        out = comfy.call("AtomoVideoSampler", model=model, positive=cpos, negative=cneg, latent=lat, seed=3 + i,
                         steps=STEPS, cfg=1.0, cfg_rescale=0.0, sampler_name="euler", scheduler="simple",
                         denoise=1.0)[0]["samples"]
        # Same frames bit for bit, except that the node puts the pinned frames back exactly where the sampler
        # leaves float round-off (latent scaling in and out of the model) on them.
        given = 1 if i == 0 else K
        assert torch.equal(out[given:], runs[i].latents[given:]), f"segment {i + 1} differs from the node's"
        assert torch.allclose(out[:given], runs[i].latents[:given], rtol=1e-5, atol=1e-5)
        segments.append(out)
    # ... and the hand-joined decoded segments are the long-video node's output.
    decoded = [vae.decode(s) for s in segments]
    joined = decoded[0]
    for d in decoded[1:]:
        joined = comfy.call(JOIN, video=joined, segment=d, context_frames=K)[0]
    assert joined.shape == (N, SIZE, SIZE, 3)
    assert torch.allclose(joined, plain[0], atol=1e-5)


def test_drift_strength_zero_is_a_no_op(comfy, plain, setup):
    """Off means off: with a reference and a target set, strength 0 changes nothing, bit for bit (2 segments:
    the same runs as the first two of the 4-segment video)."""
    video = run(comfy, setup, total_frames=L + (L - K), drift_strength=0.0, drift_target="output only",
                reference=picture(7))
    assert torch.equal(video, plain[0][:L + (L - K)])


class DriftingVAE:
    """The real VAE, but the n-th decode call adds n x (brightness, colour) shift: a video whose brightness and
    colour drift by a known amount per segment (each segment is decoded in one call)."""
    SHIFT = torch.tensor([0.05, 0.03, -0.02])

    def __init__(self, vae):
        self.vae, self.calls = vae, 0

    def encode(self, pixels):
        return self.vae.encode(pixels)

    def decode(self, latents):
        out = self.vae.decode(latents)
        out = (out + self.calls * self.SHIFT.to(out)).clamp(0, 1)
        self.calls += 1
        return out


def lab_drift(segment: torch.Tensor, reference: torch.Tensor, dc) -> float:
    """Mean over L*, a*, b* of |mean(segment) - mean(reference)|."""
    return (dc.lab_stats(segment).mean - dc.lab_stats(reference).mean).abs().mean().item()


def test_drift_control_removes_per_segment_drift_and_pins_the_encoded_context(comfy, setup):
    dc = comfy.pack_module("atomo_core.drift_control")
    off_vae, on_vae = DriftingVAE(setup["vae"]), DriftingVAE(setup["vae"])
    off = run(comfy, setup, vae=off_vae, drift_strength=0.0)
    runs = []
    on = run(comfy, setup, vae=on_vae, drift_strength=1.0, drift_target="context and output",
             on_segment=runs.append)
    assert off_vae.calls == on_vae.calls == 4
    assert off.shape == on.shape == (N, SIZE, SIZE, 3)
    last = slice(N - (L - K), N)
    drift_off, drift_on = lab_drift(off[last], off[:L], dc), lab_drift(on[last], on[:L], dc)
    print(f"last-segment mean |Lab drift|: uncorrected {drift_off:.2f}, corrected {drift_on:.3f}")
    assert drift_off > 3.0  # 3 segments x the shift: several L* / b* units
    assert drift_on < drift_off / 5
    # image hand-over (drift on): each run's first K latents are exactly the encoded (corrected) context
    for r in runs[1:]:
        assert r.mask[:, 0, 0, 0].tolist() == [1.0] * K + [0.0] * (L - K)
        assert torch.equal(r.latents[:K], r.cond_latent[:K])
    # the first segment is the reference: untouched apart from the drifting decode (call 0 adds nothing)
    assert torch.equal(on[:L], runs[0].images)


@pytest.mark.parametrize("drift", [0.0, 1.0], ids=["latent-handover", "image-handover"])
def test_continuing_a_given_video_keeps_it_and_pins_its_last_frames(comfy, plain, setup, drift):
    given = plain[0][:5]
    runs = []
    video = run(comfy, setup, image=None, given_video=given, total_frames=5 + (L - K), drift_strength=drift,
                on_segment=runs.append)
    assert video.shape == (5 + L - K, SIZE, SIZE, 3) and torch.equal(video[:5], given)
    assert len(runs) == 1 and runs[0].mask[:, 0, 0, 0].tolist() == [1.0] * K + [0.0] * (L - K)
    context = given[-K:]
    if drift:  # the given video's last segment is mapped onto its first (the default reference)
        dc = comfy.pack_module("atomo_core.drift_control")
        context = dc.apply_map(context, dc.segment_map(given[-L:], dc.lab_stats(given[:L]), dc.DriftControl()))
    encoded = setup["vae"].encode(context).float()
    assert torch.allclose(runs[0].cond_latent[:K], encoded, atol=1e-5)  # the given video's last K frames
    assert torch.equal(runs[0].latents[:K], runs[0].cond_latent[:K])


def test_interrupt_during_segment_two_stops_the_run_and_leaves_the_model_unpatched(comfy, setup):
    import comfy.model_management as mm

    layers = comfy.pack_module("atomo_core.temporal_layers")
    base, pos, neg = setup["base"], setup["pos"], setup["neg"]
    mm.unload_all_models()
    start = {"samples": torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))}
    reference = comfy.ksample(base, pos, neg, start, steps=1, cfg=1.0, disable_noise=True, denoise=0.5)["samples"]
    hook = ProgressHook(interrupt_after=STEPS)  # the first step of segment 2
    segments = []
    with pytest.raises(mm.InterruptProcessingException):
        with_hook(hook, lambda: comfy.call(LONG, **long_kwargs(setup)))
    assert max(v for v, _ in hook.updates) == STEPS + 1  # stopped inside segment 2, at once
    assert not mm.processing_interrupted()
    unet = base.model.diffusion_model
    assert not any(isinstance(c, layers.TemporalLayer) for c in unet.input_blocks[1].children())
    assert not any(isinstance(c, layers.TemporalLayer) for c in unet.modules())
    assert not any(lm.model is not None and lm.model.get_attachment("atomovideo") is not None
                   for lm in mm.current_loaded_models)
    after = comfy.ksample(base, pos, neg, start, steps=1, cfg=1.0, disable_noise=True, denoise=0.5)["samples"]
    assert torch.equal(after, reference)
    del segments


def test_interrupt_between_segments_stops_before_the_next_one(comfy, setup):
    import comfy.model_management as mm

    hook, done = ProgressHook(), []

    def after_segment(info):
        if info.kept is not None:  # reported once its kept frames are decoded
            done.append(info.segment.index)
            mm.interrupt_current_processing()  # as if the user cancelled right after segment 1 finished

    with pytest.raises(mm.InterruptProcessingException):
        run(comfy, setup, on_segment=after_segment, hook=hook)
    assert done == [0] and max(v for v, _ in hook.updates) == STEPS  # segment 2 never sampled a step
    assert not mm.processing_interrupted()


def test_continue_node_with_images_encodes_the_last_frames_and_corrects_their_drift(comfy, setup, taesd_paths):
    # taesd_paths: measuring colour drift through the VAE needs the real TAESD, not one with random values.
    dc = comfy.pack_module("atomo_core.drift_control")
    model, pos, neg, vae = setup["model"], setup["pos"], setup["neg"], setup["vae"]
    reference = picture(2)
    round_trip = vae.decode(vae.encode(reference))  # the VAE's own colour error is not drift
    frames = torch.cat([reference] * 2 + [(reference + 0.12 * torch.tensor([1.0, 0.6, -0.4])).clamp(0, 1)] * 4)
    for strength in (0.0, 1.0):
        cpos, cneg, lat = comfy.call(CONTINUE, model=model, positive=pos, negative=neg, vae=vae, context_frames=2,
                                     new_frames=2, pin_context=True, frames=frames, drift_strength=strength,
                                     reference=reference)
        mc = cpos[0][1]["model_conds"]
        image, mask = mc["atomo_image"].cond, mc["atomo_mask"].cond
        assert image.shape == (4, 4, 8, 8) and mask[:, 0, 0, 0].tolist() == [1.0, 1.0, 0.0, 0.0]
        assert (image[2:] == 0).all()
        assert torch.equal(lat["samples"], image) and torch.equal(lat["noise_mask"], 1.0 - mask)
        assert torch.equal(cneg[0][1]["model_conds"]["atomo_image"].cond, image)
        if strength == 0.0:
            assert torch.allclose(image[:2], vae.encode(frames[-2:]).float(), atol=1e-6)
            raw = lab_drift(vae.decode(image[:2]), round_trip, dc)
        else:
            corrected = lab_drift(vae.decode(image[:2]), round_trip, dc)
    print(f"context drift: uncorrected {raw:.2f}, corrected {corrected:.2f}")
    assert raw > 5 and corrected < raw / 5
    # without pinning there is no noise_mask
    lat = comfy.call(CONTINUE, model=model, positive=pos, negative=neg, vae=vae, context_frames=1, new_frames=3,
                     pin_context=False, frames=frames)[2]
    assert "noise_mask" not in lat and lat["samples"].shape == (4, 4, 8, 8)


def test_join_node_drops_the_overlap(comfy):
    video = torch.arange(6.0).view(6, 1, 1, 1).expand(6, 8, 8, 3).clone()
    segment = torch.arange(4.0, 10.0).view(6, 1, 1, 1).expand(6, 8, 8, 3).clone()
    joined = comfy.call(JOIN, video=video, segment=segment, context_frames=2)[0]
    assert joined[:, 0, 0, 0].tolist() == list(range(10))


@pytest.mark.parametrize("node,over,name,fragment", [
    (LONG, dict(context_frames=4), "context_frames", "leave no new frame"),          # k >= segment length
    (LONG, dict(segment_frames=17, total_frames=40), "segment_frames", "at most 16 frames"),  # weights' limit
    (LONG, dict(context_frames=20, segment_frames=24, total_frames=60), "context_frames", "at most 16"),
    (LONG, dict(total_frames=3), "total_frames", "shorter than one segment"),
    (LONG, dict(given_video=torch.rand(1, SIZE, SIZE, 3), image=None), "context_frames", "only 1 frame"),
    (LONG, dict(given_video=torch.rand(4, 32, 32, 3), image=None), "given_video", "32x32"),
    (LONG, dict(width=60), "width", "not a multiple of 8"),
    (LONG, dict(drift_strength=1.5), "drift_strength", "outside 0..1"),
    (LONG, dict(sampler_name="nope"), "sampler_name", "unknown sampler"),
    (LONG, dict(model="base"), "model", "no AtomoVideo temporal layers"),
    (CONTINUE, dict(frames=torch.rand(2, SIZE, SIZE, 3), context_frames=3), "context_frames", "only 2 frame"),
    (CONTINUE, dict(context_frames=16, new_frames=1), "context_frames", "at most 16 frames"),
    (CONTINUE, dict(context_frames=4, new_frames=13), "new_frames", "at most 12 new frames"),
    (CONTINUE, dict(latent={"samples": torch.zeros(6, 4, 8, 8)}), "frames", "exactly one of them"),
    (CONTINUE, dict(frames=None, latent={"samples": torch.zeros(6, 4, 8, 8)}, drift_strength=0.5),
     "drift_strength", "works on images"),
    (CONTINUE, dict(frames=torch.rand(6, 60, 64, 3)), "frames", "not a multiple of 8"),
    (CONTINUE, dict(model="base"), "model", "AtomoVideo Loader"),
])
def test_refusals_name_the_node_and_the_input(comfy, setup, node, over, name, fragment):
    over = {k: (setup["base"] if isinstance(v, str) and v == "base" else v) for k, v in over.items()}
    if node == LONG:
        args = long_kwargs(setup, **over)
    else:
        args = dict(model=setup["model"], positive=setup["pos"], negative=setup["neg"], vae=setup["vae"],
                    context_frames=2, new_frames=2, frames=torch.rand(6, SIZE, SIZE, 3))
        args.update(over)
    with pytest.raises(ValueError) as e:
        comfy.call(node, **args)
    assert str(e.value).startswith(f"{node}, input '{name}': "), str(e.value)
    assert fragment in str(e.value), str(e.value)


def test_long_video_through_a_prompt(comfy, tiny_models, atomo_weights):
    prompt = {
        **fixture_models.loader_prompt(tiny_models, atomo_weights["random"]),
        "4": {"class_type": "EmptyImage", "inputs": {"width": SIZE, "height": SIZE, "batch_size": 1,
                                                     "color": 0x336699}},
        "5": {"class_type": LONG, "inputs": {
            "model": ["2", 0], "positive": ["3", 0], "negative": ["3", 0], "vae": ["1", 2], "image": ["4", 0],
            "width": SIZE, "height": SIZE, "total_frames": 6, "segment_frames": 4, "context_frames": 2, "seed": 0,
            "steps": 1, "cfg": 1.0, "cfg_rescale": 0.0, "sampler_name": "euler", "scheduler": "simple",
            "pin_context": True, "drift_strength": 1.0, "drift_target": "context and output"}},
        "6": {"class_type": "SaveAnimatedWEBP", "inputs": {"images": ["5", 0], "filename_prefix": "atomo_long",
                                                           "fps": 8.0, "lossless": False, "quality": 80,
                                                           "method": "default"}},
    }
    _, outputs = comfy.run(prompt)
    files = sorted(comfy.output_dir.rglob("atomo_long*.webp"))
    assert files and outputs
