"""The synthetic video world: deterministic from a seed, disjoint splits, real motion, files that read back."""
from __future__ import annotations


import numpy as np
import pytest

from pack import module

world = module("atomo_demo.world")

SYMMETRIC = {"circle", "square", "diamond", "star", "ring", "cross", "triangle"}


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def test_same_seed_same_bytes_other_seed_other_clip():
    a, cap_a = world.make_clip(123, frames=32, size=64)
    b, cap_b = world.make_clip(123, frames=32, size=64)
    assert a.dtype == np.uint8 and a.shape == (32, 64, 64, 3)
    assert a.tobytes() == b.tobytes() and cap_a == cap_b
    c, _ = world.make_clip(124, frames=32, size=64)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 10  # a different seed is a different clip
    # The first frames do not depend on how many frames are asked for.
    d, _ = world.make_clip(123, frames=40, size=64)
    assert d[:32].tobytes() == a.tobytes()


def test_splits_are_disjoint_and_stable():
    seeds = {s: world.split_seeds(s, 2000) for s in world.SPLITS}
    assert all(len(set(v)) == 2000 for v in seeds.values())
    assert not set(seeds["train"]) & set(seeds["val"])
    assert not set(seeds["train"]) & set(seeds["test"])
    assert not set(seeds["val"]) & set(seeds["test"])
    assert world.split_seeds("test", 5) == seeds["test"][:5]  # a longer split extends a shorter one
    with pytest.raises(ValueError, match="split must be one of"):
        world.split_seeds("validation", 3)
    with pytest.raises(ValueError, match="count must be"):
        world.split_seeds("train", -1)


def test_every_clip_moves():
    diffs = []
    for seed in world.split_seeds("train", 40):
        clip, cap = world.make_clip(seed)
        diffs.append(np.abs(np.diff(clip.astype(np.float64), axis=0)).mean())
        assert cap.count(";") == len(world.clip_spec(seed).objects)  # one phrase per object + the background
    diffs = np.array(diffs)
    # Mean absolute change between consecutive frames, in 0..255 units: a static clip would give 0.
    assert diffs.min() > 0.25, diffs.min()
    assert diffs.mean() > 1.0, diffs.mean()


def test_rendered_objects_follow_their_paths():
    """The object's centroid, recovered from the frames alone, follows the ground-truth track frame by frame."""
    checked, pooled = 0, []
    for seed in range(200):
        spec = world.clip_spec(seed)
        if len(spec.objects) != 1 or spec.objects[0].shape not in SYMMETRIC:
            continue
        o = spec.objects[0]
        frames = world.render_clip(spec)
        bg = world._background(spec)
        tracks = world.object_tracks(spec)[0]
        errs = []
        for f in range(spec.frames):
            # coverage per pixel from the composite: frame = bg + alpha * (colour - bg)
            d = np.array(world.COLOURS[o.colour], np.float64) - bg
            w = np.clip(((frames[f] - bg) * d).sum(-1) / (d * d).sum(-1), 0, 1)
            w[w < 0.02] = 0  # uint8 rounding of the background, summed over thousands of pixels, would bias it
            ys, xs = np.mgrid[0:spec.size, 0:spec.size] + 0.5
            cx, cy = (w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()
            errs.append((cx - tracks[f, 0], cy - tracks[f, 1]))
        errs = np.array(errs)
        # supersampling and uint8 rounding leave a small per-frame error, without bias over a clip.
        assert np.hypot(*errs.T).max() < 0.5, (seed, errs)
        assert np.abs(errs.mean(0)).max() < 0.2, (seed, errs.mean(0))
        pooled.append(errs)
        if o.velocity != (0.0, 0.0):
            step = np.abs(np.diff(tracks[:, :2], axis=0))
            # Between bounces, the object moves by its velocity every frame.
            assert np.median(step[:, 0]) == pytest.approx(abs(o.velocity[0]), abs=1e-6)
            assert np.median(step[:, 1]) == pytest.approx(abs(o.velocity[1]), abs=1e-6)
            assert np.hypot(*(tracks[-1, :2] - tracks[0, :2])) > 1.0 or "bouncing" in world.caption(spec)
        checked += 1
    assert checked >= 20
    assert np.abs(np.concatenate(pooled).mean(0)).max() < 0.05  # no offset or half-pixel convention error


def test_objects_stay_inside_and_masks_match_frames():
    for seed in range(30):
        spec = world.clip_spec(seed, frames=32, size=96)
        frames, masks = world.render_clip(spec, with_masks=True)
        assert frames.shape == (32, 96, 96, 3) and masks.shape == (32, len(spec.objects), 96, 96)
        tracks = world.object_tracks(spec)
        for i, o in enumerate(spec.objects):
            assert (tracks[i, :, :2] >= o.extent - 1e-9).all() and (tracks[i, :, :2] <= 96 - o.extent + 1e-9).all()
            # the object is never cut by the borders: its area divided by scale^2 stays the same on every frame
            area = masks[:, i].sum((1, 2)) / tracks[i, :, 3] ** 2
            assert area.min() > 10 and area.max() / area.min() < 1.03, (seed, i, area.min(), area.max())
        top = spec.objects[-1]
        full = masks[:, -1] == 1.0
        assert (frames[full] == np.array(world.COLOURS[top.colour], np.uint8)).all()


def test_caption_names_the_motions():
    spec = world.clip_spec(1)
    cap = world.caption(spec)
    for o in spec.objects:
        assert o.colour in cap
        if o.omega:
            assert ("clockwise" if o.omega > 0 else "counter-clockwise") in cap
        if o.scale_amp:
            assert "growing and shrinking" in cap
    assert cap.endswith("background")


@pytest.mark.parametrize("fmt", ["mp4", "gif", "webp"])
def test_files_round_trip(tmp_path, fmt):
    import av

    paths = world.write_clips(tmp_path, "val", 2, frames=33, size=96, fmt=fmt)
    assert [p.name for p in paths] == [f"val_00000_s1000000000.{fmt}", f"val_00001_s1000000001.{fmt}"]
    for p, seed in zip(paths, world.split_seeds("val", 2)):
        clip, cap = world.make_clip(seed, frames=33, size=96)
        assert p.with_suffix(".txt").read_text(encoding="utf-8").strip() == cap
        if fmt == "webp":  # FFmpeg has no animated-WebP decoder; Pillow (a ComfyUI dependency) reads it
            from PIL import Image, ImageSequence

            with Image.open(p) as im:
                got = np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)])
        else:
            with av.open(str(p)) as c:
                got = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
        assert got.shape == (33, 96, 96, 3)
        if fmt == "webp":
            assert np.array_equal(got, clip)  # lossless
        else:  # mp4: H.264 4:4:4 crf 10; gif: one 256-colour palette per clip
            assert _psnr(got, clip) > {"mp4": 38.0, "gif": 40.0}[fmt], (fmt, _psnr(got, clip))


def test_cli_and_bad_inputs(tmp_path, capsys):
    assert world.main([str(tmp_path / "out"), "--split", "test", "--count", "2", "--frames", "8", "--size", "64"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "test_00000_s2000000000.mp4", "test_00000_s2000000000.txt",
        "test_00001_s2000000001.mp4", "test_00001_s2000000001.txt"]
    assert "wrote 2 mp4 clips" in capsys.readouterr().out
    with pytest.raises(ValueError, match="fmt must be one of"):
        world.write_clips(tmp_path, "train", 1, fmt="avi")
    with pytest.raises(ValueError, match="size must be in"):
        world.make_clip(0, size=8)
    with pytest.raises(ValueError, match="seed must be"):
        world.make_clip(-1)
    with pytest.raises(TypeError, match="frames must be an integer"):
        world.make_clip(0, frames=3.5)
