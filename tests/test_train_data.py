"""Training data: `[data]` config, discovery, reading, sampling and cropping (host-free)."""
from __future__ import annotations

from pathlib import Path

import pytest

from atomo_train.data.config import DataConfig
from atomo_train.errors import ConfigError


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
