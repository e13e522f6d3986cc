"""Host-free: image preparation for the image-latent conditioning (resize modes, sizes, RGBA, frame indices)."""
from __future__ import annotations

import pytest
import torch

from pack import core

prep = core("image_preparation")
AtomoVideoError = core("errors", "AtomoVideoError")


def test_sizes_not_divisible_by_8_are_refused_naming_the_valid_ones():
    prep.check_size(64, "width")
    with pytest.raises(AtomoVideoError, match=r"width 100 is not a multiple of 8.*refused, not snapped: use 96 or 104"):
        prep.check_size(100, "width")
    with pytest.raises(AtomoVideoError, match="use 8"):
        prep.check_size(5, "height")


def test_rgba_becomes_rgb_and_grey_is_repeated():
    rgba = torch.rand(2, 8, 8, 4)
    assert torch.equal(prep.to_rgb(rgba), rgba[..., :3])
    grey = torch.rand(1, 8, 8, 1)
    assert prep.to_rgb(grey).shape == (1, 8, 8, 3)
    with pytest.raises(AtomoVideoError, match="2 channels"):
        prep.to_rgb(torch.rand(1, 8, 8, 2))


def test_crop_fills_the_frame_and_cuts_evenly():
    # 16 wide, 8 high; left half black, right half white, a 4-pixel red band in the middle
    img = torch.zeros(1, 8, 16, 3)
    img[:, :, 8:] = 1.0
    out = prep.resize(img, 8, 8, prep.CROP)
    assert out.shape == (1, 8, 8, 3)
    # centre crop keeps columns 4..11: left half black, right half white
    assert out[0, :, :3].max() < 0.05 and out[0, :, 5:].min() > 0.95


def test_pad_keeps_the_whole_image_with_black_borders():
    img = torch.ones(1, 8, 16, 3)
    out = prep.resize(img, 16, 16, prep.PAD)
    assert out.shape == (1, 16, 16, 3)
    assert (out[0, :4] == 0).all() and (out[0, 12:] == 0).all() and out[0, 4:12].min() > 0.99


def test_stretch_and_same_size():
    img = torch.rand(2, 8, 16, 3)
    assert prep.resize(img, 8, 8, prep.STRETCH).shape == (2, 8, 8, 3)
    assert prep.resize(img, 16, 8, prep.CROP) is img
    with pytest.raises(AtomoVideoError, match="unknown resize mode"):
        prep.resize(img, 8, 8, "zoom")


@pytest.mark.parametrize("text,frames,expected", [
    ("0", 16, [0]), ("0,8,15", 16, [0, 8, 15]), ("0-3", 16, [0, 1, 2, 3]), ("-1", 16, [15]),
    ("12, 0-2", 16, [12, 0, 1, 2]), (" 3 ; 5 ", 8, [3, 5]),
])
def test_frame_indices(text, frames, expected):
    assert prep.parse_frame_indices(text, frames) == expected


@pytest.mark.parametrize("text,message", [
    ("", "no frame index"), ("16", "outside the video of 16"), ("0-16", "beyond the video"), ("3-1", "backwards"),
    ("a", "not a frame index"), ("0,0", "given twice"), ("-17", "outside"),
    ("0,,1", "'0,,1' has an empty entry"), ("0,", "'0,' has an empty entry"), (",3", "empty entry"),
    ("0;;1", "empty entry"), ("1.5", "'1.5' in '1.5' is not a frame index"),
])
def test_bad_frame_indices_are_refused(text, message):
    with pytest.raises(AtomoVideoError, match=message):
        prep.parse_frame_indices(text, 16)


def test_frame_conditioning_places_latents_and_mask():
    lat = torch.randn(3, 4, 2, 2)
    image, mask = prep.frame_conditioning(lat, [0, 8, 15], 16)
    assert image.shape == (16, 4, 2, 2) and mask.shape == (16, 1, 2, 2)
    for j, i in enumerate([0, 8, 15]):
        assert torch.equal(image[i], lat[j])
    others = [i for i in range(16) if i not in (0, 8, 15)]
    assert (image[others] == 0).all()
    assert torch.equal(mask[:, 0, 0, 0], torch.tensor([1.0 if i in (0, 8, 15) else 0.0 for i in range(16)]))
    assert set(mask.unique().tolist()) == {0.0, 1.0}


def test_chunks_cover_everything():
    assert list(prep.chunks(10, 4)) == [(0, 4), (4, 8), (8, 10)]
    assert list(prep.chunks(3, 8)) == [(0, 3)]
