"""Training data: `[data]` config, discovery, reading, sampling and cropping (host-free)."""
from __future__ import annotations

from pack import module
from pathlib import Path

import pytest

DataConfig = module("atomo_train.data.config", "DataConfig")
ConfigError = module("atomo_train.errors", "ConfigError")


def test_config_defaults_and_paths(tmp_path):
    cfg = DataConfig.from_dict({"path": "videos"}, base_dir=tmp_path)
    assert cfg.path == (tmp_path / "videos").resolve()
    assert (cfg.frames, cfg.stride, cfg.fps, cfg.start, cfg.clips_per_video) == (16, 2, None, "random", 1)
    assert (cfg.size, cfg.crop, cfg.val_fraction, cfg.val_path, cfg.seed) == ((256, 256), "center", 0.0, None, 0)
    assert cfg.cache_path == cfg.path / ".atomovideo-cache"
    listed = DataConfig.from_dict({"path": "lists/clips.csv", "fps": 8, "size": [384, 256], "cache_dir": "/x/c"},
                                  base_dir=tmp_path)
    assert (listed.stride, listed.fps, listed.size) == (None, 8.0, (384, 256))
    assert listed.cache_path == Path("/x/c")
    assert DataConfig.from_dict({"path": "l.jsonl"}, base_dir=tmp_path).cache_path == tmp_path / ".atomovideo-cache"


@pytest.mark.parametrize("d, key, words", [
    ({}, "data.path", "is required"),
    ({"path": "v", "frames": 1}, "data.frames", "at least 2"),
    ({"path": "v", "frames": 16.5}, "data.frames", "whole number"),
    ({"path": "v", "stride": 2, "fps": 8}, "data.fps", "not both"),
    ({"path": "v", "fps": 0}, "data.fps", "above 0"),
    ({"path": "v", "start": "middle"}, "data.start", "'random', 'fixed'"),
    ({"path": "v", "size": 250}, "data.size", "multiple of 8"),
    ({"path": "v", "size": [256]}, "data.size", "[width, height]"),
    ({"path": "v", "crop": "left"}, "data.crop", "'center', 'random'"),
    ({"path": "v", "val_fraction": 0.1, "val_path": "w"}, "data.val_fraction", "not both"),
    ({"path": "v", "val_fraction": 1.0}, "data.val_fraction", "at most 0.9"),
    ({"path": "v", "frame": 16}, "data.frame", "did you mean 'frames'"),
    ({"path": "v", "clips_per_video": 0}, "data.clips_per_video", "at least 1"),
])
def test_config_errors_name_the_key(d, key, words):
    with pytest.raises(ConfigError) as e:
        DataConfig.from_dict(d)
    assert e.value.key == key
    assert str(e.value).startswith(f"config key '{key}': ") and words in str(e.value)
    assert isinstance(e.value, ValueError)


# --------------------------------------------------------------------------------------------- discovery

import json  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

V = module("atomo_train.data", "videos")  # noqa: E402
from train_clips import square_x, write_clip  # noqa: E402


def test_discover_folder_reports_videos_without_caption(tmp_path):
    write_clip(tmp_path, "a", frames=4)
    write_clip(tmp_path / "sub", "b", frames=4, ext=".webm", caption="  b caption \n")
    write_clip(tmp_path, "c", frames=4, ext=".gif", caption=None)
    write_clip(tmp_path / ".hidden", "d", frames=4)
    (tmp_path / "notes.txt").write_text("not a caption")
    items, skipped = V.discover(tmp_path)
    assert [(i.name, i.caption) for i in items] == [("a.mp4", "a yellow square moves right"), ("sub/b.webm", "b caption")]
    assert [(s.path.name, s.reason) for s in skipped] == [("c.gif", "no caption file c.txt")]


def test_discover_errors_name_data_path(tmp_path):
    with pytest.raises(ConfigError, match="config key 'data.path': .* does not exist"):
        V.discover(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no video"):
        V.discover(tmp_path / "empty")
    write_clip(tmp_path / "nocap", "x", frames=4, caption=None)
    with pytest.raises(ConfigError, match="none of the 1 videos .* has a caption: add a same-name .txt") as e:
        V.discover(tmp_path / "nocap")
    assert e.value.key == "data.path"
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(ConfigError, match=r"config key 'data.path': the list .*empty\.jsonl' names no video; add one "
                                          r"entry per video"):
        V.discover(tmp_path / "empty.jsonl")
    (tmp_path / "latin1.csv").write_bytes(b"path,caption\nx.mp4,caf\xe9\n")
    with pytest.raises(ConfigError, match=r"cannot read the list .*latin1\.csv' \(UnicodeDecodeError\); check its "
                                          r"permissions and that it is a UTF-8 text file"):
        V.discover(tmp_path / "latin1.csv")


def test_discover_csv_and_jsonl(tmp_path):
    write_clip(tmp_path / "v", "a", frames=4)
    write_clip(tmp_path / "v", "b", frames=4, ext=".mov", caption=None)
    lst = tmp_path / "list.csv"
    lst.write_text('path,caption\nv/a.mp4,"first, with comma"\nv/b.mov,second\nv/missing.mp4,gone\n')
    items, skipped = V.discover(lst)
    assert [(i.name, i.caption) for i in items] == [("v/a.mp4", "first, with comma"), ("v/b.mov", "second")]
    assert [s.reason for s in skipped] == ["line 4 of list.csv: file not found"]
    js = tmp_path / "list.jsonl"
    js.write_text(json.dumps({"path": str(tmp_path / "v/a.mp4"), "caption": "abs"}) + "\n{bad\n"
                  + json.dumps({"path": "v/b.mov"}) + "\n")
    items, skipped = V.discover(js)
    assert [(i.name, i.caption) for i in items] == [("v/a.mp4", "abs")]
    assert [s.reason.split(" (")[0] for s in skipped] == ["line 2 is not JSON", "line 3 of list.jsonl: no caption"]
    bad = tmp_path / "bad.csv"
    bad.write_text("file,text\nv/a.mp4,x\n")
    with pytest.raises(ConfigError, match="columns path,caption"):
        V.discover(bad)


# --------------------------------------------------------------------------------------------- reading

@pytest.mark.parametrize("ext", [".mp4", ".webm", ".gif", ".mov"])
def test_read_every_format_in_order(tmp_path, ext):
    video = write_clip(tmp_path, "a", frames=12, ext=ext)
    times = V.frame_times(video)
    assert len(times) == 12 and times[1] == pytest.approx(0.125, abs=0.006)
    frames = V.read_frames(video, [1, 5, 5, 11])
    assert frames.dtype == torch.uint8 and frames.shape == (4, 48, 64, 3)
    assert [square_x(f.numpy()) for f in frames] == [2.0, 10.0, 10.0, 22.0]


def _cfg(tmp_path, **kw):
    return DataConfig.from_dict({"path": str(tmp_path), "size": [96, 64], **kw})


def test_stride_sampling_fixed_starts(tmp_path):
    video = write_clip(tmp_path, "a", frames=20, width=96, height=64, speed=3)
    item = V.VideoItem(video, "c", "a.mp4")
    clips = V.load_clips(item, _cfg(tmp_path, frames=4, stride=3, start="fixed", clips_per_video=3))
    assert [c.clip_id for c in clips] == ["a.mp4#0", "a.mp4#1", "a.mp4#2"]
    assert [c.frame_indices for c in clips] == [[0, 3, 6, 9], [5, 8, 11, 14], [10, 13, 16, 19]]
    c = clips[1]
    assert c.pixels.dtype == torch.float32 and c.pixels.shape == (4, 3, 64, 96)
    assert 0 <= c.pixels.min() and c.pixels.max() <= 1
    assert [square_x(f.numpy()) for f in c.pixels] == [15.0, 24.0, 33.0, 42.0]  # speed 3 px/frame


def test_random_starts_are_seeded_per_video_and_cover_the_range(tmp_path):
    times = [i / 8 for i in range(20)]
    cfg = _cfg(tmp_path, frames=4, stride=2, start="random")
    starts = [V.plan_clips(times, cfg, f"v{i}.mp4")[0][0] for i in range(400)]
    assert set(starts) == set(range(14))  # 20 - 7 + 1 possible starts, each drawn
    assert max(starts.count(s) for s in range(14)) < 3 * 400 / 14
    assert V.plan_clips(times, cfg, "v3.mp4") == V.plan_clips(times, cfg, "v3.mp4")
    other_seed = _cfg(tmp_path, frames=4, stride=2, start="random", seed=1)
    assert [V.plan_clips(times, other_seed, f"v{i}.mp4")[0][0] for i in range(400)] != starts


def test_fps_sampling_resamples_by_timestamps(tmp_path):
    cfg4 = _cfg(tmp_path, frames=5, fps=4, start="fixed")
    times8 = [i / 8 for i in range(24)]
    assert V.plan_clips(times8, cfg4, "a") == [[0, 2, 4, 6, 8]]
    gif_times = [round(i / 8, 2) for i in range(24)]  # GIF stores centiseconds: 0.13, 0.38, ...
    assert V.plan_clips(gif_times, cfg4, "a") == [[0, 2, 4, 6, 8]]
    cfg3 = _cfg(tmp_path, frames=4, fps=3, start="fixed")  # 1/3 s ticks on an 8 fps source: nearest frames
    assert V.plan_clips(times8, cfg3, "a") == [[0, 3, 5, 8]]
    up = _cfg(tmp_path, frames=4, fps=16, start="fixed")
    assert V.plan_clips([i / 8 for i in range(3)], up, "a") == [[0, 0, 1, 1]]
    gif = write_clip(tmp_path, "g", frames=24, ext=".gif", width=96, height=64)
    clip = V.load_clips(V.VideoItem(gif, "c", "g.gif"), cfg4)[0]
    assert [square_x(f.numpy()) for f in clip.pixels] == [0.0, 4.0, 8.0, 12.0, 16.0]


def test_too_short_and_unreadable_give_reasons(tmp_path):
    with pytest.raises(V.VideoError, match=r"too short: 5 frames, a clip needs 7 \(frames=4, stride=2\)"):
        V.plan_clips([i / 8 for i in range(5)], _cfg(tmp_path, frames=4), "a")
    with pytest.raises(V.VideoError, match=r"too short: 0.50 s .* needs 1.00 s \(frames=5, fps=4\)"):
        V.plan_clips([i / 8 for i in range(5)], _cfg(tmp_path, frames=5, fps=4), "a")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00not a video" * 50)
    with pytest.raises(V.VideoError, match="unreadable"):
        V.frame_times(junk)


def test_resize_covers_then_crops(tmp_path):
    src = torch.zeros(3, 100, 200, 3, dtype=torch.uint8)
    src[:, 40:60, 90:110] = 255  # a square in the middle of a 2:1 frame
    out = V.resize_crop(src, (64, 64), "center")
    assert out.shape == (3, 3, 64, 64)  # 200x100 -> 128x64, centre 64 columns kept
    ys, xs = torch.nonzero(out[0, 0] > 0.5, as_tuple=True)
    assert xs.float().mean().item() == pytest.approx(31.5, abs=0.6)
    assert ys.float().mean().item() == pytest.approx(31.5, abs=0.6)
    assert len(xs) == pytest.approx(0.64 ** 2 * 400, rel=0.15)  # the square is scaled, not cut
    lefts = set()
    for seed in range(30):
        r = V.resize_crop(src, (64, 64), "random", torch.Generator().manual_seed(seed))
        xs_per_frame = {torch.nonzero(f[0] > 0.5, as_tuple=True)[1].float().mean().item() for f in r}
        assert len(xs_per_frame) == 1  # one offset for the whole clip
        lefts.add(round(xs_per_frame.pop()))
    assert len(lefts) > 10  # offsets vary across seeds (65 possible)


@pytest.mark.parametrize("fmt, min_psnr", [("mp4", 38.0), ("gif", 40.0), ("webp", 99.0)])
def test_demo_world_clips_read_back(tmp_path, fmt, min_psnr):
    world = module("atomo_demo", "world")

    paths = world.write_clips(tmp_path, "train", 2, frames=12, size=64, fmt=fmt)
    items, skipped = V.discover(tmp_path)
    assert not skipped and [i.path for i in items] == sorted(paths)
    cfg = DataConfig.from_dict({"path": str(tmp_path), "frames": 4, "stride": 3, "start": "fixed", "size": 64})
    for item, seed in zip(items, world.split_seeds("train", 2)):
        truth, caption = world.make_clip(seed, 12, 64)
        assert item.caption == caption
        (clip,) = V.load_clips(item, cfg)
        assert clip.frame_indices == [0, 3, 6, 9]
        want = torch.from_numpy(truth[[0, 3, 6, 9]]).permute(0, 3, 1, 2).float() / 255
        mse = (clip.pixels - want).pow(2).mean().item()
        assert 10 * np.log10(1 / max(mse, 1e-12)) > min_psnr
