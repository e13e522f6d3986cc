"""AtomoVideoMetrics in the real ComfyUI: prompt execution, canvas output, CLIP vision, node = command (issue 7)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from approx import assert_mapping_close
from test_metrics import texture, translating, write_webp

REPO = Path(__file__).resolve().parent.parent
NODE = "AtomoVideoMetrics"


def u8(frames):
    return np.rint(np.asarray(frames) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def files(comfy):
    """A lossless animated WebP (8 frames, 2 px/frame translation) and its first frame, in ComfyUI's input/."""
    from PIL import Image

    v = u8(translating(2, frames=8))
    write_webp(comfy.input_dir / "metrics_video.webp", v / 255.0)
    Image.fromarray(v[0]).save(comfy.input_dir / "metrics_input.png")
    Image.fromarray(u8(texture(64, 64))).save(comfy.input_dir / "metrics_small.png")
    Image.fromarray(v[3]).save(comfy.input_dir / "metrics_one_frame.png")
    return v


def prompt(video="metrics_video.webp", image="metrics_input.png"):
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": video}},
        "2": {"class_type": "LoadImage", "inputs": {"image": image}},
        "3": {"class_type": NODE, "inputs": {"video": ["1", 0], "image": ["2", 0]}},
    }


def tiny_clip_vision(tmp_path, projection=True):
    """A real ComfyUI ClipVisionModel with a small config and random weights (the loader refuses tiny files)."""
    import comfy.clip_vision

    cfg = {"attention_dropout": 0.0, "dropout": 0.0, "hidden_act": "quick_gelu", "hidden_size": 64,
           "image_size": 32, "initializer_factor": 1.0, "initializer_range": 0.02, "intermediate_size": 128,
           "layer_norm_eps": 1e-5, "model_type": "clip_vision_model", "num_attention_heads": 4, "num_channels": 3,
           "num_hidden_layers": 2, "patch_size": 8, "torch_dtype": "float32"}
    if projection:
        cfg["projection_dim"] = 32
    path = tmp_path / ("cv.json" if projection else "cv_noproj.json")
    path.write_text(json.dumps(cfg))
    import torch

    cv = comfy.clip_vision.ClipVisionModel(str(path))
    g = torch.Generator().manual_seed(0)
    cv.load_sd({k: torch.randn(v.shape, generator=g) * 0.2 for k, v in cv.get_sd().items()})
    return cv


def test_node_is_registered_with_tooltips(comfy):
    cls = comfy.node_class(NODE)
    schema = cls.define_schema()
    assert schema.category == "AtomoVideo" and schema.is_output_node
    assert [i.id for i in schema.inputs] == ["video", "image", "clip_vision"]
    assert all(i.tooltip for i in schema.inputs)
    assert schema.inputs[2].optional


def test_prompt_runs_and_shows_plot_and_text_on_canvas(comfy, files):
    _, outputs = comfy.run(prompt())
    ui = outputs["3"]
    assert len(ui["images"]) == 1 and ui["images"][0]["type"] == "temp"
    from PIL import Image

    shown = Image.open(Path(comfy.folder_paths.get_temp_directory()) / ui["images"][0]["subfolder"]
                       / ui["images"][0]["filename"])
    assert shown.size == (512, 800)  # readable at canvas width
    assert "flow-square-mean" in ui["text"][0]


def test_node_and_command_give_the_same_numbers(comfy, files, tmp_path):
    import torch

    video = comfy.call("LoadImage", image="metrics_video.webp")[0]
    image = comfy.call("LoadImage", image="metrics_input.png")[0]
    assert video.shape == (8, 96, 96, 3)
    report_json, summary, plot = comfy.call(NODE, video=video, image=image)
    node = json.loads(report_json)
    out = tmp_path / "cmd.json"
    r = subprocess.run([sys.executable, "-m", "atomo_core.metrics", str(comfy.input_dir / "metrics_video.webp"),
                        "--image", str(comfy.input_dir / "metrics_input.png"), "--json", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    cmd = json.loads(out.read_text())
    assert_mapping_close(node["summary"], cmd["summary"], rel=1e-6, abs=1e-9)
    assert node["per_frame"]["ssim_to_input"] == pytest.approx(cmd["per_frame"]["ssim_to_input"], rel=1e-6)
    assert node["per_pair"]["warp_error"] == pytest.approx(cmd["per_pair"]["warp_error"], rel=1e-5, abs=1e-12)
    assert node["summary"]["flow_magnitude_mean"] == pytest.approx(2.0, rel=0.10)
    assert isinstance(plot, torch.Tensor) and plot.shape == (1, 800, 512, 3)


def test_changing_the_video_changes_the_plot(comfy, files):
    import torch

    image = torch.from_numpy(files[0] / 255.0).float()[None]
    a = torch.from_numpy(files / 255.0).float()
    b = a.clone()
    b[4:] = (b[4:] * 0.7).clamp(0, 1)  # darker second half: brightness, SSIM and flow change
    pa = comfy.call(NODE, video=a, image=image)[2]
    pb = comfy.call(NODE, video=b, image=image)[2]
    assert pa.shape == pb.shape and (pa - pb).abs().max() > 0.5


def test_clip_vision_adds_clip_similarities(comfy, files, tmp_path):
    import torch

    cv = tiny_clip_vision(tmp_path)
    frame = torch.from_numpy(files[0] / 255.0).float()
    static = comfy.call(NODE, video=frame[None].repeat(4, 1, 1, 1), image=frame[None], clip_vision=cv)
    rep = json.loads(static[0])
    assert rep["per_frame"]["clip_to_input"] == pytest.approx([1.0] * 4, abs=1e-5)
    assert rep["per_pair"]["clip_adjacent"] == pytest.approx([1.0] * 3, abs=1e-5)
    moving = json.loads(comfy.call(NODE, video=torch.from_numpy(files / 255.0).float(), image=frame[None],
                                   clip_vision=cv)[0])
    emb = cv.encode_image(torch.from_numpy(files / 255.0).float()).image_embeds.detach().numpy().astype(np.float64)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    assert moving["per_pair"]["clip_adjacent"] == pytest.approx(np.sum(emb[:-1] * emb[1:], 1).tolist(), abs=1e-5)
    assert moving["summary"]["clip_to_input_mean"] is not None


def test_clip_vision_without_projection_is_refused(comfy, files, tmp_path):
    import torch

    cv = tiny_clip_vision(tmp_path, projection=False)
    v = torch.from_numpy(files / 255.0).float()
    with pytest.raises(ValueError) as e:
        comfy.call(NODE, video=v, image=v[:1], clip_vision=cv)
    assert str(e.value).startswith(f"{NODE}, input 'clip_vision'") and "no projection" in str(e.value)


@pytest.mark.parametrize("video, image, bad_input, words", [
    ("metrics_one_frame.png", "metrics_input.png", "video", "single frame"),
    ("metrics_video.webp", "metrics_small.png", "image", "64x64 px but the video is 96x96"),
])
def test_bad_inputs_fail_the_prompt_naming_node_and_input(comfy, files, video, image, bad_input, words):
    _, errors = comfy.run(prompt(video, image), expect_failure=True)
    msg = errors[0]["exception_message"]
    assert f"{NODE}, input '{bad_input}'" in msg and words in msg, msg


def test_empty_batch_is_refused(comfy):
    import torch

    with pytest.raises(ValueError) as e:
        comfy.call(NODE, video=torch.zeros(0, 64, 64, 3), image=torch.zeros(1, 64, 64, 3))
    assert str(e.value).startswith(f"{NODE}, input 'video'") and "empty" in str(e.value)
