"""Queue-time validation (issue 14): a missing or wrong file, or a choice the node does not offer, is refused by
ComfyUI's `execution.validate_prompt` (what the server's POST /prompt runs) in well under a second, before any
model is loaded, with the folders searched, what they hold and which workflows run without an AtomoVideo file.
Also: the pack creates its model folders at start-up without touching anything else."""
from __future__ import annotations

import asyncio
import copy
import os
import time

import pytest
import torch
from safetensors.torch import save_file

from fixture_models import loader_prompt
from test_image_projection import base_state_dict


def video_prompt(tiny_models: dict, weights: str, scheduler: str = "trailing") -> dict:
    prompt = loader_prompt(tiny_models, weights)
    prompt.update({
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 2}},
        "5": {"class_type": "AtomoVideoSampler", "inputs": {
            "model": ["2", 0], "positive": ["3", 0], "negative": ["3", 0], "latent": ["4", 0], "seed": 0,
            "steps": 1, "cfg": 1.0, "cfg_rescale": 0.0, "sampler_name": "ddim", "scheduler": scheduler,
            "denoise": 1.0}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}},
    })
    return prompt


@pytest.fixture
def no_model_loads(comfy, monkeypatch):
    """Counts checkpoint loads: validation must not load any model."""
    import comfy.sd as comfy_sd

    calls = []
    real = comfy_sd.load_checkpoint_guess_config
    monkeypatch.setattr(comfy_sd, "load_checkpoint_guess_config", lambda *a, **k: calls.append(a) or real(*a, **k))
    return calls


def validate(comfy, prompt):
    start = time.perf_counter()
    ok, error, outputs, node_errors = comfy.validate(prompt)
    return ok, node_errors, time.perf_counter() - start


def custom_errors(node_errors: dict, node: str) -> list[str]:
    assert node in node_errors, node_errors
    errors = node_errors[node]["errors"]
    assert {e["type"] for e in errors} == {"custom_validation_failed"}, errors
    return [e["details"] for e in errors]


def test_a_missing_weight_file_is_refused_at_queue_time(comfy, tiny_models, atomo_weights, no_model_loads):
    ok, node_errors, seconds = validate(comfy, video_prompt(tiny_models, "atomovideo_sd15.safetensors"))
    assert not ok and list(node_errors) == ["2"]
    (details,) = custom_errors(node_errors, "2")
    assert details.startswith("weights - AtomoVideoLoader, input 'weights': 'atomovideo_sd15.safetensors' was not "
                              "found. Searched: ")
    # the folders searched, with what each holds (the fixture AtomoVideo files, the pack's demo file)
    assert f"{comfy.models_dir / 'atomovideo'} (has " in details and atomo_weights["fresh"] in details
    assert "demo_atomovideo.safetensors" in details and str(comfy.models_dir / "animatediff_models") in details
    assert "'demo' runs the pack's own small model" in details and "'public_weights' runs public files" in details
    assert "https://huggingface.co/Leoxing/PIA" in details
    assert seconds < 1.0 and no_model_loads == []
    # the same prompt with a file that is there passes validation (the check is not a blanket refusal)
    ok, node_errors, _ = validate(comfy, video_prompt(tiny_models, atomo_weights["fresh"]))
    assert ok, node_errors
    assert no_model_loads == []


@pytest.mark.parametrize("state_dict, expected", [
    (lambda: base_state_dict(), "an IP-Adapter file"),
    (lambda: {"first_stage_model.x": torch.zeros(2)}, "no motion-module keys (1 tensors"),
])
def test_a_wrong_weight_file_is_refused_at_queue_time(comfy, tiny_models, no_model_loads, tmp_path, state_dict,
                                                      expected):
    path = comfy.models_dir / "atomovideo" / f"wrong_{len(expected)}.safetensors"
    save_file(state_dict(), str(path))
    try:
        ok, node_errors, seconds = validate(comfy, video_prompt(tiny_models, path.name))
    finally:
        path.unlink()
    (details,) = custom_errors(node_errors, "2")
    assert not ok and f"'{path.name}' ({path}) is not a temporal-layer file this pack loads" in details
    assert expected in details and "Accepted: AtomoVideo" in details
    assert seconds < 1.0 and no_model_loads == []


def test_a_choice_the_node_does_not_offer_is_refused_at_queue_time(comfy, tiny_models, atomo_weights):
    ok, node_errors, _ = validate(comfy, video_prompt(tiny_models, atomo_weights["fresh"], scheduler="nope"))
    assert not ok and list(node_errors) == ["5"]
    details = custom_errors(node_errors, "5")
    # ComfyUI repeats a validate_inputs message once per input the function takes (sampler_name, scheduler)
    assert len(details) == 2
    assert all("AtomoVideoSampler, input 'scheduler': 'nope' is not one of ['trailing'" in d for d in details)


def projection_prompt(tiny_models: dict, weights: str, projection: str) -> dict:
    prompt = video_prompt(tiny_models, weights)
    prompt["8"] = {"class_type": "LoadImage", "inputs": {"image": "missing_on_purpose.png"}}
    prompt["9"] = {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": "missing_on_purpose.safetensors"}}
    prompt["10"] = {"class_type": "AtomoVideoCLIPVisionInject", "inputs": {
        "model": ["2", 0], "clip_vision": ["9", 0], "image": ["8", 0], "projection": projection, "weight": 1.0,
        "start_percent": 0.0, "end_percent": 1.0}}
    prompt["5"]["inputs"]["model"] = ["10", 0]
    return prompt


def test_projection_files_are_checked_at_queue_time(comfy, tiny_models, atomo_weights, no_model_loads):
    folder = comfy.models_dir / "ipadapter"
    ok, node_errors, seconds = validate(comfy, projection_prompt(tiny_models, atomo_weights["fresh"],
                                                                 "ip-adapter_sd15.safetensors"))
    (details,) = custom_errors(node_errors, "10")
    assert details.startswith("projection - AtomoVideoCLIPVisionInject, input 'projection': "
                              "'ip-adapter_sd15.safetensors' was not found. Searched: " + str(folder))
    assert "'demo' runs the pack's own small model" in details and seconds < 1.0
    # the core loaders' own queue-time checks still apply to their files (V1 combos)
    assert {e["type"] for e in node_errors["9"]["errors"]} == {"value_not_in_list"}
    # a motion module put into models/ipadapter is named as what it is not
    motion = {"down_blocks.0.motion_modules.0.temporal_transformer.norm.weight": torch.zeros(320)}
    save_file(motion, str(folder / "motion_in_ipadapter.safetensors"))
    try:
        _, node_errors, _ = validate(comfy, projection_prompt(tiny_models, atomo_weights["fresh"],
                                                              "motion_in_ipadapter.safetensors"))
    finally:
        (folder / "motion_in_ipadapter.safetensors").unlink()
    (details,) = custom_errors(node_errors, "10")
    assert "motion_in_ipadapter.safetensors is not an IP-Adapter file: it needs 'image_proj.*'" in details
    _, node_errors, _ = validate(comfy, projection_prompt(tiny_models, atomo_weights["fresh"],
                                                          "from AtomoVideo weights"))
    assert "10" not in node_errors
    assert no_model_loads == []


def test_the_demo_base_is_checked_at_queue_time(comfy):
    demo = comfy.node_class("AtomoVideoDemoModel")
    assert demo.validate_inputs("demo_unet.safetensors") is True
    message = demo.validate_inputs("nope.safetensors")
    assert message.startswith("AtomoVideoDemoModel, input 'base': 'nope.safetensors' is not one of the pack's demo "
                              "bases ['demo_unet.safetensors'")


def test_the_pack_creates_its_model_folders_and_touches_nothing_else(comfy, tmp_path, monkeypatch):
    import folder_paths

    models = tmp_path / "models"
    (models / "atomovideo").mkdir(parents=True)
    (models / "atomovideo" / "mine.safetensors").write_bytes(b"12345")
    (models / "checkpoints").mkdir()
    before = {p: (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None) for p in models.rglob("*")}
    monkeypatch.setattr(folder_paths, "models_dir", str(models))
    monkeypatch.setattr(folder_paths, "folder_names_and_paths", copy.deepcopy(folder_paths.folder_names_and_paths))
    asyncio.run(comfy.pack.comfy_entrypoint())  # what ComfyUI calls when it loads the pack
    made = sorted(p.relative_to(models).as_posix() for p in models.rglob("*") if p not in before)
    assert made == ["animatediff_models", "ipadapter"]
    assert all(not any((models / m).iterdir()) for m in made)
    assert {p: (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None) for p in before} == before
    # the new folders are the ones the nodes search
    assert str(models / "ipadapter") in folder_paths.get_folder_paths("ipadapter")
    # a second start finds them and makes nothing
    model_files = comfy.pack_module("atomo_host.model_files")
    assert model_files.create_model_folders(str(models)) == []
    assert sorted(os.listdir(models)) == ["animatediff_models", "atomovideo", "checkpoints", "ipadapter"]
