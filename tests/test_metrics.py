"""Host-free checks that each metric matches its definition on constructed videos (issue 7)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from approx import assert_mapping_close
from pack import core

AtomoVideoError = core("errors", "AtomoVideoError")
check_inputs, evaluate, fit_image, summary_text, to_json = core(
    "metrics", "check_inputs", "evaluate", "fit_image", "summary_text", "to_json")
fidelity, plots = core("metrics", "fidelity", "plots")
command = core("metrics.__main__", "main")

NODE = "AtomoVideoMetrics"


def texture(h, w, seed=0, sigma=3.0):
    """Smooth random RGB texture in [0, 1]: trackable by optical flow, with SSIM-relevant structure."""
    import cv2

    t = np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)
    t = cv2.GaussianBlur(t, (0, 0), sigma)
    return (t - t.min()) / (t.max() - t.min())


def translating(k, frames=8, size=96, dy=0, seed=0):
    """A window sliding k px/frame right (and dy px/frame down) over a larger texture: exact translation."""
    big = texture(size + abs(dy) * frames + 2, size + k * frames + 2, seed)
    return np.stack([big[dy * i:dy * i + size, k * i:k * i + size] for i in range(frames)])


def score(video, image, **kw):
    return evaluate(*check_inputs(video, image), **kw)


def mean_colour_embed(images):
    """A stand-in CLIP embedder (any image -> vector map works for the cosine arithmetic)."""
    small = images[:, ::8, ::8].reshape(len(images), -1)
    return small - 0.5


# -- constructed cases -------------------------------------------------------------------------------------
def test_static_video_has_no_motion_and_perfect_temporal_consistency():
    img = texture(64, 64)
    rep = score(np.stack([img] * 6), img, embed=mean_colour_embed)
    s, pp = rep["summary"], rep["per_pair"]
    assert s["flow_magnitude_mean"] == pytest.approx(0.0, abs=1e-6)
    assert s["flow_square_mean"] == pytest.approx(0.0, abs=1e-6)
    assert s["warp_error_mean"] == pytest.approx(0.0, abs=1e-9)
    assert pp["adjacent_ssim"] == pytest.approx([1.0] * 5)
    assert pp["clip_adjacent"] == pytest.approx([1.0] * 5)
    assert rep["per_frame"]["clip_to_input"] == pytest.approx([1.0] * 6)
    assert s["lightness_drift_max"] == pytest.approx(0.0, abs=1e-9)
    assert s["first_frame_ssim"] == pytest.approx(1.0) and s["ssim_to_input_mean"] == pytest.approx(1.0)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_translation_gives_k_pixels_of_flow_and_near_zero_warp_error(k):
    v = translating(k)
    rep = score(v, v[0])
    s = rep["summary"]
    assert s["flow_magnitude_mean"] == pytest.approx(k, rel=0.10)
    assert s["flow_square_mean"] == pytest.approx(k * k, rel=0.20)
    for m in rep["per_pair"]["flow_magnitude"]:  # every pair, not just on average
        assert m == pytest.approx(k, rel=0.10)
    assert s["warp_error_mean"] < 1e-4  # vs ~1e-2 for the unwarped frame difference
    assert min(rep["per_pair"]["warp_valid_fraction"]) > 0.8
    unwarped = np.mean((v[1:] - v[:-1]) ** 2)
    assert s["warp_error_mean"] < unwarped / 100


def test_diagonal_translation_magnitude_is_euclidean():
    v = translating(3, dy=3)
    s = score(v, v[0])["summary"]
    assert s["flow_magnitude_mean"] == pytest.approx(3 * np.sqrt(2), rel=0.10)
    assert s["flow_square_mean"] == pytest.approx(18.0, rel=0.20)


def test_first_frame_equal_to_input_gives_mse_0_ssim_1():
    v = translating(2)
    s = score(v, v[0])["summary"]
    assert s["first_frame_mse"] == 0.0
    assert s["first_frame_ssim"] == pytest.approx(1.0, abs=1e-12)
    assert s["first_frame_psnr"] == fidelity.PSNR_CAP_DB


def test_first_frame_mse_and_psnr_follow_their_definitions():
    v = translating(2)
    img = v[0].copy()
    v = v.copy()
    v[0] = np.clip(img + 0.05, 0, 1)  # a known offset, clipped where it would leave [0, 1]
    expected = float(np.mean((v[0].astype(np.float64) - img) ** 2))
    s = score(v, img)["summary"]
    assert s["first_frame_mse"] == pytest.approx(expected, rel=1e-6)
    assert s["first_frame_psnr"] == pytest.approx(10 * np.log10(1 / expected), rel=1e-6)
    assert s["first_frame_ssim"] < 1.0


def test_brightness_ramp_is_reported_as_that_ramp():
    from skimage.color import lab2rgb, rgb2lab

    base = rgb2lab(texture(64, 64, seed=3) * 0.5 + 0.25)  # mid-tones: the ramp never clips
    step = 2.5
    v = np.stack([lab2rgb(base + np.array([step * i, 0, 0])) for i in range(8)]).astype(np.float32)
    image = lab2rgb(base - np.array([4.0, 0, 0])).astype(np.float32)  # input 4 L* darker than frame 0
    rep = score(v, image)
    d0 = np.array(rep["per_frame"]["lab_mean_minus_frame0"])
    assert d0[:, 0] == pytest.approx(step * np.arange(8), abs=0.1)
    assert np.abs(d0[:, 1:]).max() < 0.5  # lightness changed, colour did not
    s = rep["summary"]
    assert s["lightness_drift_last"] == pytest.approx(step * 7, abs=0.1)
    assert s["lightness_drift_max"] == pytest.approx(step * 7, abs=0.1)
    assert s["lightness_frame0_minus_input"] == pytest.approx(4.0, abs=0.1)
    din = np.array(rep["per_frame"]["lab_mean_minus_input"])[:, 0]
    assert din == pytest.approx(4.0 + step * np.arange(8), abs=0.1)


def test_colour_cast_and_contrast_are_separated_from_brightness():
    from skimage.color import lab2rgb, rgb2lab

    base = rgb2lab(texture(64, 64, seed=4) * 0.5 + 0.25)
    shifted = base + np.array([0, 6.0, 0])  # redder, same lightness
    flat = base.copy()
    flat[..., 0] = base[..., 0].mean() + (base[..., 0] - base[..., 0].mean()) * 0.5  # half the contrast
    v = np.stack([lab2rgb(x) for x in (base, shifted, flat)]).astype(np.float32)
    s = score(v, v[0])["summary"]
    assert s["chroma_shift_max"] == pytest.approx(6.0, abs=0.3)
    assert s["contrast_ratio_last"] == pytest.approx(0.5, abs=0.03)


def test_ssim_is_scikit_image_ssim():
    from skimage.metrics import structural_similarity

    v = translating(3, frames=4)
    img = texture(96, 96, seed=7)
    rep = score(v, img)
    for f, got in zip(v, rep["per_frame"]["ssim_to_input"]):
        assert got == pytest.approx(structural_similarity(f, img, channel_axis=-1, data_range=1.0), abs=1e-12)
    for a, b, got in zip(v[:-1], v[1:], rep["per_pair"]["adjacent_ssim"]):
        assert got == pytest.approx(structural_similarity(a, b, channel_axis=-1, data_range=1.0), abs=1e-12)


def test_clip_similarities_are_cosines_of_the_given_embeddings():
    rng = np.random.default_rng(1)
    fe, ie = rng.normal(size=(5, 16)), rng.normal(size=16)
    v = translating(1, frames=5)
    rep = score(v, v[0], frame_embeds=fe, image_embed=ie)

    def cos(a, b):
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    assert rep["per_frame"]["clip_to_input"] == pytest.approx([cos(f, ie) for f in fe])
    assert rep["per_pair"]["clip_adjacent"] == pytest.approx([cos(fe[i], fe[i + 1]) for i in range(4)])
    assert rep["summary"]["clip_to_input_mean"] == pytest.approx(np.mean([cos(f, ie) for f in fe]))
    no_clip = score(v, v[0])
    assert no_clip["summary"]["clip_to_input_mean"] is None and no_clip["per_pair"]["clip_adjacent"] is None
    assert "n/a (no CLIP)" in summary_text(no_clip)


# -- bad input ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("video, image, bad_input, words", [
    (np.zeros((1, 64, 64, 3)), np.zeros((64, 64, 3)), "video", "single frame"),
    (np.zeros((0, 64, 64, 3)), np.zeros((64, 64, 3)), "video", "empty"),
    (np.zeros((4, 64, 64, 3)), np.zeros((64, 80, 3)), "image", "80x64 px but the video is 64x64"),
    (np.zeros((4, 64, 64, 3)), np.zeros((2, 64, 64, 3)), "image", "got 2 images"),
    (np.full((4, 64, 64, 3), np.nan), np.zeros((64, 64, 3)), "video", "NaN"),
    (np.zeros((4, 8, 8, 3)), np.zeros((8, 8, 3)), "video", "at least 16x16"),
    (np.zeros((4, 64, 64, 2)), np.zeros((64, 64, 3)), "video", "3 channels"),
    (np.zeros((4, 64, 64)), np.zeros((64, 64, 3)), "video", "expected an image batch"),
])
def test_bad_inputs_name_the_input(video, image, bad_input, words):
    with pytest.raises(AtomoVideoError) as e:
        check_inputs(video, image)
    assert e.value.field == bad_input and e.value.node is None  # the node (or the command) adds its name
    msg = str(e.value.at(NODE))
    assert msg.startswith(f"{NODE}, input '{bad_input}'") and words in msg, msg


def test_rgba_and_torch_inputs_are_accepted():
    import torch

    v = translating(1, frames=3)
    rgba = np.concatenate([v, np.ones_like(v[..., :1])], axis=-1)
    a, im = check_inputs(torch.from_numpy(rgba), torch.from_numpy(v[:1]))
    assert a.shape == v.shape and im.shape == v.shape[1:]
    assert np.array_equal(a, v)


def test_fit_image_matches_video_size():
    img = texture(50, 120)
    out = fit_image(img, 64, 96)
    assert out.shape == (64, 96, 3) and out.min() >= 0 and out.max() <= 1


# -- report, plot, command ---------------------------------------------------------------------------------
def test_report_is_strict_json():
    v = translating(2, frames=4)
    rep = score(v, v[0])
    rep["per_pair"]["warp_error"][0] = float("nan")  # e.g. no trackable pixel
    back = json.loads(to_json(rep))
    assert back["per_pair"]["warp_error"][0] is None
    assert back["summary"]["first_frame_ssim"] == 1.0
    assert len(back["per_frame"]["ssim_to_input"]) == 4 and len(back["per_pair"]["flow_magnitude"]) == 3


def test_plot_is_drawn_from_the_numbers():
    v = translating(2, frames=6)
    p1 = plots.plot_report(score(v, v[0]))
    assert p1.shape == (4 * plots.PANEL_H, plots.WIDTH, 3) and p1.dtype == np.float32
    assert 0.0 <= p1.min() and p1.max() <= 1.0
    assert (p1 < 0.5).mean() > 0.01  # axes, text and lines drawn, not a blank canvas
    p2 = plots.plot_report(score(translating(4, frames=6, seed=2), v[0]))
    assert p2.shape == p1.shape and np.abs(p1 - p2).max() > 0.5
    # the series colours are present (the curves themselves, not just axes)
    for c in plots.COLOURS[:1]:
        assert (np.abs(p1 * 255 - np.array(c)).sum(-1) < 30).sum() > 50


def write_webp(path, frames):
    from PIL import Image

    ims = [Image.fromarray(np.rint(f * 255).astype(np.uint8)) for f in frames]
    ims[0].save(path, save_all=True, append_images=ims[1:], lossless=True, duration=100)


def test_command_scores_a_file_as_the_core_scores_its_frames(tmp_path):
    from PIL import Image

    v = np.rint(translating(2, frames=6) * 255) / 255  # 8-bit exact, so the lossless file holds the same frames
    write_webp(tmp_path / "v.webp", v)
    Image.fromarray(np.rint(v[0] * 255).astype(np.uint8)).save(tmp_path / "in.png")
    out = tmp_path / "r.json"
    assert command([str(tmp_path / "v.webp"), "--image", str(tmp_path / "in.png"), "--json", str(out),
                    "--plot", str(tmp_path / "p.png")]) == 0
    got = json.loads(out.read_text())
    want = json.loads(to_json(score(v.astype(np.float32), v[0].astype(np.float32))))
    assert_mapping_close(got["summary"], want["summary"], rel=1e-6, abs=1e-9)
    assert got["per_pair"]["flow_magnitude"] == pytest.approx(want["per_pair"]["flow_magnitude"], rel=1e-6)
    assert Image.open(tmp_path / "p.png").size == (plots.WIDTH, 4 * plots.PANEL_H)


def test_command_reads_gif_and_mp4_and_compares_several(tmp_path, capsys):
    import av
    from PIL import Image

    v = np.rint(translating(2, frames=6) * 255).astype(np.uint8)
    ims = [Image.fromarray(f) for f in v]
    ims[0].save(tmp_path / "v.gif", save_all=True, append_images=ims[1:], duration=100)
    ims[0].save(tmp_path / "in.png")
    with av.open(str(tmp_path / "v.mp4"), "w") as c:
        s = c.add_stream("mpeg4", rate=8)
        s.width, s.height, s.pix_fmt = 96, 96, "yuv420p"
        for f in v:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    out = tmp_path / "r.json"
    assert command([str(tmp_path / "v.gif"), str(tmp_path / "v.mp4"), "--image", str(tmp_path / "in.png"),
                    "--json", str(out)]) == 0
    reps = json.loads(out.read_text())
    assert [r["frames"] for r in reps] == [6, 6]
    for r in reps:  # lossy files, same 2 px/frame motion
        assert r["summary"]["flow_magnitude_mean"] == pytest.approx(2.0, rel=0.10)
    assert "flow_square_mean" in capsys.readouterr().out


def test_command_refuses_mismatched_image_unless_fitted(tmp_path, capsys):
    from PIL import Image

    v = translating(1, frames=4)
    write_webp(tmp_path / "v.webp", v)
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "in.png")
    assert command([str(tmp_path / "v.webp"), "--image", str(tmp_path / "in.png")]) == 2
    assert "input '--image'" in capsys.readouterr().err
    assert command([str(tmp_path / "v.webp"), "--image", str(tmp_path / "in.png"), "--fit-image"]) == 0
