"""The shipped workflows (`workflows/*.json`) in the real ComfyUI: every node type registered, every link
output->input of one type, every widget value accepted by `validate_prompt`, and every workflow executed on the
fixture models, producing webp and mp4 files with the expected number of frames. A change to a node's inputs
makes these tests fail until the workflow is updated.

File names: the workflows use the public model names; the tests substitute the fixture files (tiny SD1.5
checkpoint, AtomoVideo / PIA / IP-Adapter / LoRA / ControlNet files with random values, a tiny CLIP vision model).
The `demo` workflow runs with the pack's own files (AtomoVideo Demo Model, the bundled AtomoVideo file and picture),
nothing substituted (the trained files committed in `atomo_demo/weights/`).

CLIP vision: ComfyUI's CLIPVisionLoader recognises only full-size encoders (it picks a config by layer count, host
notes section 7), so for *execution* the converted prompt's CLIPVisionLoader nodes are replaced by the test node
`AtomoTestCLIPVisionLoader` defined here: same input (`clip_name`, a file from models/clip_vision), same output
type, but it builds a small `comfy.clip_vision.ClipVisionModel` (hidden 64, 2 layers, projection 32) and loads
the file into it. *Validation* uses the workflows' own CLIPVisionLoader nodes unchanged.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import workflow_builder as wb
from ade_helpers import TINY_MODULES, synthetic_state_dict
from demo_files import ensure_demo_atomovideo
from test_clip_injection_host import TINY_CLIP
from test_image_projection import base_state_dict
from test_loader_host import _write_lora

from pack import core, module

ui_to_api = module("atomo_host.ui_workflow")  # the pack's converter, the one `python -m atomo_demo run` uses

WORKFLOW_DIR = Path(__file__).resolve().parent.parent / "workflows"
DEMO_IMAGE_FILE = Path(__file__).resolve().parent.parent / "atomo_demo" / "assets" / wb.DEMO_IMAGE
NAMES = sorted(p.stem for p in WORKFLOW_DIR.glob("*.json"))
FRAMES, SIZE = 4, 64
TEST_CLIP_VISION_NODE = "AtomoTestCLIPVisionLoader"

# What the tests shrink (per node type, input -> value): few frames, small pictures, 1-2 steps.
SMALL = {
    "AtomoVideoImageConditioning": {"frames": FRAMES, "width": SIZE, "height": SIZE},
    "EmptyLatentImage": {"width": SIZE, "height": SIZE},
    "AtomoVideoSampler": {"steps": 2},
    "KSampler": {"steps": 1},
    "AtomoVideoLongVideo": {"width": SIZE, "height": SIZE, "total_frames": 8, "segment_frames": FRAMES,
                            "context_frames": 2, "steps": 1},
}
# The demo runs its own models: in one step its base gives pixel-identical frames, which the webp writer merges.
SMALL_BY_WORKFLOW = {"demo": {"AtomoVideoLongVideo": {"steps": 2}}}


def test_every_workflow_is_shipped():
    assert set(NAMES) >= set(wb.BUILDERS), f"missing workflows: {set(wb.BUILDERS) - set(NAMES)}"


# ---------------------------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------------------------
def tiny_controlnet_state_dict(seed: int = 31) -> dict:
    """An SD1.5-layout ControlNet (ldm keys, `control_model.` prefix) with the tiny UNet's configuration."""
    import comfy.cldm.cldm as cldm
    import comfy.ops
    import fixture_models

    cfg = {k: v for k, v in fixture_models.TINY_UNET_CONFIG.items() if k != "out_channels"}
    with torch.device("meta"):
        net = cldm.ControlNet(**cfg, hint_channels=3, operations=comfy.ops.disable_weight_init)
    shapes = {k: torch.empty(v.shape) for k, v in net.state_dict().items()}
    return {f"control_model.{k}": v.half() for k, v in fixture_models.fill_random_(shapes, seed).items()}


def write_input_files(comfy) -> tuple[str, str]:
    import av
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:SIZE, 0:SIZE]
    img = np.stack([x * 4, y * 4, (x + y) * 2], -1).clip(0, 255).astype(np.uint8)
    Image.fromarray(img).save(comfy.input_dir / "wf_input.png")
    video = comfy.input_dir / "wf_control.mp4"
    with av.open(str(video), "w") as out:
        stream = out.add_stream("libx264", rate=8)
        stream.width = stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        for i in range(FRAMES):
            frame = np.zeros((SIZE, SIZE, 3), np.uint8)
            frame[16:48, 8 + 4 * i:40 + 4 * i] = 255  # a moving square: Canny finds its edges
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return "wf_input.png", video.name


@pytest.fixture(scope="module")
def fixture_files(comfy, tiny_models, tmp_path_factory):
    """public file name -> fixture file name, with the fixture files written into the host's folders."""
    atomovideo_sites = core("unet_sites", "atomovideo_sites")
    fresh_weights, save_atomovideo = core("weight_format", "fresh_weights", "save_atomovideo")

    models = comfy.models_dir
    model = comfy.load_checkpoint(tiny_models["checkpoint"])[0]
    unet = model.get_model_object("diffusion_model")
    widths = [s.inner for s in comfy.pack_module("atomo_host.decoupled_attention").cross_attention_sites(unet)]
    # AtomoVideo file (v-prediction + zero terminal SNR) with an IP-Adapter-style image projection
    sites = atomovideo_sites(comfy.pack_module("atomo_host.inflation").host_layout(unet))
    w = fresh_weights(sites, image_tokens=4)
    ip = base_state_dict(widths, clip_dim=TINY_CLIP["projection_dim"])
    w.image_proj = {k[len("image_proj."):]: v for k, v in ip.items() if k.startswith("image_proj.")}
    w.image_proj.update({k: v for k, v in ip.items() if k.startswith("ip_adapter.")})
    save_atomovideo(models / "atomovideo" / "wf_atomo_v.safetensors", w)
    save_file(ip, str(models / "ipadapter" / "wf_ip_base.safetensors"))
    # PIA: motion modules for the tiny UNet's blocks + the 9-channel conv_in
    pia = synthetic_state_dict("pia", [m for m in TINY_MODULES if not m[0].startswith("mid")], device="cpu", seed=4)
    g = torch.Generator().manual_seed(5)
    pia["conv_in.weight"] = torch.randn(320, 9, 3, 3, generator=g) * 0.1
    pia["conv_in.bias"] = torch.randn(320, generator=g)
    save_file({k: v.contiguous() for k, v in pia.items()}, str(models / "animatediff_models" / "wf_pia.safetensors"))
    # CLIP vision: the tiny encoder's weights (loaded by the test node below)
    import comfy.clip_vision as cv
    import fixture_models

    cfg = tmp_path_factory.mktemp("wf_clipvision") / "tiny_clip_vision.json"
    cfg.write_text(json.dumps(TINY_CLIP))
    shapes = {k: torch.empty(v.shape) for k, v in cv.ClipVisionModel(str(cfg)).get_sd().items()}
    save_file(fixture_models.fill_random_(shapes, seed=21), str(models / "clip_vision" / "wf_tiny_clip_vision.safetensors"))
    save_file(tiny_controlnet_state_dict(), str(models / "controlnet" / "wf_tiny_controlnet.safetensors"))
    image, video = write_input_files(comfy)
    ensure_demo_atomovideo()
    (comfy.input_dir / wb.DEMO_IMAGE).write_bytes(DEMO_IMAGE_FILE.read_bytes())  # what README tells UI users
    return {
        "files": {wb.CHECKPOINT: tiny_models["checkpoint"], wb.ATOMO_WEIGHTS: "wf_atomo_v.safetensors",
                  wb.PIA: "wf_pia.safetensors", wb.IPADAPTER: "wf_ip_base.safetensors",
                  wb.CLIP_VISION: "wf_tiny_clip_vision.safetensors", wb.LORA: _write_lora(comfy, "wf_lora.safetensors"),
                  wb.CONTROLNET: "wf_tiny_controlnet.safetensors", wb.INPUT_IMAGE: image, wb.CONTROL_VIDEO: video},
        "clip_config": str(cfg),
    }


@pytest.fixture(scope="module")
def test_clip_vision_node(comfy, fixture_files):
    """Registers AtomoTestCLIPVisionLoader in the host for this module (see the module docstring)."""
    import comfy.clip_vision as cv
    import comfy.utils as cu

    folder_paths = comfy.folder_paths
    config = fixture_files["clip_config"]

    class AtomoTestCLIPVisionLoader:
        CATEGORY = "testing"
        RETURN_TYPES = ("CLIP_VISION",)
        FUNCTION = "load"

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"clip_name": (folder_paths.get_filename_list("clip_vision"),)}}

        def load(self, clip_name):
            model = cv.ClipVisionModel(config)
            missing, unexpected = model.load_sd(cu.load_torch_file(folder_paths.get_full_path("clip_vision", clip_name)))
            assert not missing and not unexpected
            return (model,)

    comfy.nodes.NODE_CLASS_MAPPINGS[TEST_CLIP_VISION_NODE] = AtomoTestCLIPVisionLoader
    yield TEST_CLIP_VISION_NODE
    comfy.nodes.NODE_CLASS_MAPPINGS.pop(TEST_CLIP_VISION_NODE, None)


# ---------------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------------
def load_workflow(name: str) -> dict:
    return ui_to_api.load(WORKFLOW_DIR / f"{name}.json")


def substitute(prompt: dict, files: dict) -> dict:
    """Replace public model / input file names with the fixture files (every input whose value is one)."""
    out = copy.deepcopy(prompt)
    for node in out.values():
        for k, v in node["inputs"].items():
            if isinstance(v, str) and v in files:
                node["inputs"][k] = files[v]
    return out


def shrink(prompt: dict, name: str = "") -> dict:
    out = copy.deepcopy(prompt)
    for node in out.values():
        node["inputs"].update(SMALL.get(node["class_type"], {}))
        node["inputs"].update(SMALL_BY_WORKFLOW.get(name, {}).get(node["class_type"], {}))
    return out


def with_test_clip_vision(prompt: dict) -> dict:
    out = copy.deepcopy(prompt)
    for node in out.values():
        if node["class_type"] == "CLIPVisionLoader":
            node["class_type"] = TEST_CLIP_VISION_NODE
    return out


def output_files(comfy, outputs: dict, prompt: dict, class_type: str) -> list[tuple[str, Path]]:
    """(save node id, file) of every file the `class_type` nodes wrote."""
    files = []
    for nid, node in prompt.items():
        if node["class_type"] != class_type:
            continue
        for item in outputs[nid]["images"]:
            files.append((nid, Path(comfy.output_dir) / item.get("subfolder", "") / item["filename"]))
    return files


def mp4_frames(path: Path) -> int:
    import av

    with av.open(str(path)) as f:
        return sum(1 for _ in f.decode(video=0))


def combo_errors(prompt: dict, classes: dict) -> list[str]:
    """Combo values not among the options. validate_prompt of ComfyUI 0.3.64 checks only V1 combos (a list as
    the type); V3 combos ("COMBO" with `options`) are checked here the same way."""
    errors = []
    for nid, node in prompt.items():
        for name, (spec, _) in ui_to_api.input_specs(classes[node["class_type"]]).items():
            value = node["inputs"].get(name)
            if value is None or isinstance(value, list):
                continue
            if isinstance(spec[0], (list, tuple)):
                options = list(spec[0])
            elif ui_to_api.type_name(spec[0]) == "COMBO":
                options = list((spec[1] if len(spec) > 1 else {}).get("options", []))
            else:
                continue
            if value not in options:
                errors.append(f"node {nid} ({node['class_type']}), input '{name}': {value!r} not in {options}")
    return errors


def expected_frames(prompt: dict, node_id: str) -> int:
    """Frames of the video a save node writes, traced up its links: `total_frames` of the long-video node it
    comes from, else `frames` of the image conditioning its latent comes from."""
    node = prompt[node_id]
    if node["class_type"] == "AtomoVideoLongVideo":
        return node["inputs"]["total_frames"]
    if node["class_type"] == "AtomoVideoImageConditioning":
        return node["inputs"]["frames"]
    for key in ("images", "video", "samples", "latent"):
        src = node["inputs"].get(key)
        if isinstance(src, list):
            return expected_frames(prompt, src[0])
    raise AssertionError(f"node {node_id} ({node['class_type']}) does not come from an AtomoVideoImageConditioning "
                         "or AtomoVideoLongVideo node")


# ---------------------------------------------------------------------------------------------------------------
# The committed files
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(wb.BUILDERS))
def test_committed_workflow_is_what_the_builder_writes(comfy, name):
    built = wb.build_all(comfy.nodes.NODE_CLASS_MAPPINGS)[name]
    committed = (WORKFLOW_DIR / f"{name}.json").read_text(encoding="utf-8")
    assert committed == built, (f"workflows/{name}.json differs from tests/workflow_builder.py's output; run "
                                "`COMFYUI_PATH=... python3 tests/workflow_builder.py` and review the diff")


@pytest.mark.parametrize("name", NAMES)
def test_workflow_is_valid_against_the_real_host(comfy, fixture_files, name):
    wf = load_workflow(name)
    classes = comfy.nodes.NODE_CLASS_MAPPINGS
    # every node type registered (core + this pack), except the frontend-only notes
    types = {n["type"] for n in wf["nodes"]}
    assert "Note" in types, "every workflow has a note telling the user which model files to put where"
    assert {t for t in types if t not in ui_to_api.FRONTEND_ONLY} <= set(classes)
    # every link: output of the source node -> input of the target node, of one type
    by_id = {n["id"]: n for n in wf["nodes"]}
    for lid, src, src_slot, dst, dst_slot, ltype in wf["links"]:
        out_type = ui_to_api.output_types(classes[by_id[src]["type"]])[src_slot]
        inp = by_id[dst]["inputs"][dst_slot]
        in_type = ui_to_api.type_name(ui_to_api.input_specs(classes[by_id[dst]["type"]])[inp["name"]][0][0])
        assert ltype == out_type == in_type == inp["type"], (name, lid)
        assert inp["link"] == lid and lid in by_id[src]["outputs"][src_slot]["links"], (name, lid)
    # every widget value accepted by validate_prompt (shipped values; only file names substituted)
    prompt = substitute(ui_to_api.convert(wf, classes, name), fixture_files["files"])
    ok, err, outputs, node_errors = comfy.validate(prompt)
    assert ok, f"{name}: {err} {node_errors}"
    assert outputs, name
    assert not combo_errors(prompt, classes), name


LOADERS = {"CheckpointLoaderSimple": "ckpt_name", "CLIPVisionLoader": "clip_name", "AtomoVideoLoader": "weights",
           "LoraLoader": "lora_name", "ControlNetLoader": "control_net_name", "LoadImage": "image",
           "LoadVideo": "file"}


@pytest.mark.parametrize("name", [n for n in NAMES if n != "demo"])
def test_workflow_uses_public_model_names(comfy, fixture_files, name):
    prompt = ui_to_api.convert(load_workflow(name), comfy.nodes.NODE_CLASS_MAPPINGS, name)
    for nid, node in prompt.items():
        key = LOADERS.get(node["class_type"])
        if key:
            assert node["inputs"][key] in fixture_files["files"], (name, nid, node["inputs"][key])


def test_demo_workflow_uses_only_files_the_pack_ships(comfy):
    """No fixture, no download: its files are the pack's own (the AtomoVideo file found through the bundled
    folder of `atomovideo`, the picture that `python -m atomo_demo run` copies into the input folder)."""
    demo = comfy.pack_module("atomo_host.demo_model")
    prompt = ui_to_api.convert(load_workflow("demo"), comfy.nodes.NODE_CLASS_MAPPINGS, "demo")
    files = {(n["class_type"], n["inputs"][LOADERS[n["class_type"]]]) for n in prompt.values()
             if n["class_type"] in LOADERS}
    assert files == {("AtomoVideoLoader", demo.ATOMOVIDEO_FILE), ("LoadImage", DEMO_IMAGE_FILE.name)}
    assert DEMO_IMAGE_FILE.is_file()
    assert module("atomo_host.demo_run").INPUT_IMAGE == DEMO_IMAGE_FILE
    types = {n["class_type"] for n in prompt.values()}
    assert "AtomoVideoDemoModel" in types and not types & {"CheckpointLoaderSimple", "CLIPVisionLoader"}


# ---------------------------------------------------------------------------------------------------------------
# Execution
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_workflow_executes_and_writes_videos_with_the_expected_frames(comfy, fixture_files, test_clip_vision_node,
                                                                        name, taesd_paths):
    # taesd_paths: a random VAE decodes every frame alike, and the webp writer merges identical frames.
    from PIL import Image

    prompt = ui_to_api.convert(load_workflow(name), comfy.nodes.NODE_CLASS_MAPPINGS, name)
    prompt = with_test_clip_vision(shrink(substitute(prompt, fixture_files["files"]), name))
    _, outputs = comfy.run(prompt)
    webps = output_files(comfy, outputs, prompt, "SaveAnimatedWEBP")
    mp4s = output_files(comfy, outputs, prompt, "SaveVideo")
    n_webp = sum(n["class_type"] == "SaveAnimatedWEBP" for n in prompt.values())
    n_mp4 = sum(n["class_type"] == "SaveVideo" for n in prompt.values())
    assert n_webp + n_mp4 > 0
    assert len(webps) == n_webp and len(mp4s) == n_mp4, outputs
    for nid, path in webps:
        assert path.suffix == ".webp" and path.is_file()
        with Image.open(path) as im:
            assert im.n_frames == expected_frames(prompt, nid), (name, path)
            assert im.size == (SIZE, SIZE)
    for nid, path in mp4s:
        assert path.suffix == ".mp4" and path.is_file()
        assert mp4_frames(path) == expected_frames(prompt, nid), (name, path)


# ---------------------------------------------------------------------------------------------------------------
# A change to a node's inputs fails these tests
# ---------------------------------------------------------------------------------------------------------------
class _Changed:
    """A stand-in schema for one node type: the host's schema with one edit (the host is not modified)."""

    def __init__(self, cls, edit=None, outputs=None):
        self._cls, self._edit, self._outputs = cls, edit, outputs

    def INPUT_TYPES(self):
        types = copy.deepcopy({k: v for k, v in self._cls.INPUT_TYPES().items() if k != "hidden"})
        if self._edit:
            self._edit(types)
        return types

    @property
    def RETURN_TYPES(self):
        return self._outputs if self._outputs is not None else self._cls.RETURN_TYPES


def _add_widget(types):
    types["required"]["eta"] = ("FLOAT", {"default": 0.0})


def _remove_widget(types):
    del types["required"]["cfg_rescale"]


def _rename_socket(types):
    types["required"] = {("images" if k == "image" else k): v for k, v in types["required"].items()}


def _retype_socket(types):
    types["required"]["vae"] = ("LATENT", {})


@pytest.mark.parametrize("node,change,message", [
    ("AtomoVideoSampler", {"edit": _add_widget}, r"8 widget values .* 8 widget inputs .*'eta'.*update the workflow"),
    ("AtomoVideoSampler", {"edit": _remove_widget}, r"8 widget values .* 6 widget inputs"),
    ("AtomoVideoImageConditioning", {"edit": _rename_socket}, r"input 'image': the node has no input named 'image'"),
    ("AtomoVideoImageConditioning", {"edit": _retype_socket}, r"input 'vae': the workflow says type VAE, .* LATENT"),
    ("AtomoVideoLoader", {"outputs": ("ATOMO_MODEL",)}, r"link \d+ has type MODEL, but output 0 of node \d+ "
                                                        r"\(AtomoVideoLoader\) is ATOMO_MODEL"),
    ("AtomoVideoCLIPVisionInject", None, r"unknown node type 'AtomoVideoCLIPVisionInject'"),
], ids=["widget-added", "widget-removed", "socket-renamed", "socket-retyped", "output-retyped", "node-removed"])
def test_a_changed_node_fails_conversion_naming_workflow_node_and_input(comfy, node, change, message):
    classes = dict(comfy.nodes.NODE_CLASS_MAPPINGS)
    if change is None:
        del classes[node]
    else:
        classes[node] = _Changed(classes[node], **change)
    failed = 0
    for name in NAMES:
        wf = load_workflow(name)
        if not any(n["type"] == node for n in wf["nodes"]):
            continue
        with pytest.raises(ui_to_api.WorkflowError, match=rf"^{name}: node \d+ .*{message}"):
            ui_to_api.convert(wf, classes, name)
        failed += 1
    assert failed, f"no workflow uses {node}"


def test_a_removed_combo_option_fails_validation(comfy, fixture_files, monkeypatch):
    """The sampler's 'ddim' option disappears from the host's schema: the validation above rejects the workflow."""
    cls = comfy.node_class("AtomoVideoSampler")
    original = cls.define_schema.__func__

    def without_ddim(c):
        schema = original(c)
        for inp in schema.inputs:
            if inp.id == "sampler_name":
                inp.options = [o for o in inp.options if o != "ddim"]
        return schema

    monkeypatch.setattr(cls, "define_schema", classmethod(without_ddim))
    prompt = substitute(ui_to_api.convert(load_workflow("image_to_video"), comfy.nodes.NODE_CLASS_MAPPINGS),
                        fixture_files["files"])
    errors = combo_errors(prompt, comfy.nodes.NODE_CLASS_MAPPINGS)
    assert len(errors) == 1 and "(AtomoVideoSampler), input 'sampler_name': 'ddim' not in" in errors[0], errors


def test_a_removed_v1_combo_option_fails_validate_prompt(comfy, fixture_files):
    """A value a V1 core node no longer offers (KSampler's sampler) is rejected by validate_prompt itself."""
    prompt = substitute(ui_to_api.convert(load_workflow("text_to_video"), comfy.nodes.NODE_CLASS_MAPPINGS),
                        fixture_files["files"])
    next(n for n in prompt.values() if n["class_type"] == "KSampler")["inputs"]["sampler_name"] = "removed_sampler"
    ok, _, _, node_errors = comfy.validate(prompt)
    assert not ok
    assert any(e["type"] == "value_not_in_list" and e["extra_info"]["input_name"] == "sampler_name"
               for v in node_errors.values() for e in v["errors"]), node_errors


def test_converter_refuses_a_link_between_different_types(comfy):
    wf = load_workflow("image_to_video")
    link = next(lk for lk in wf["links"] if lk[5] == "IMAGE")
    link[5] = "LATENT"
    with pytest.raises(ui_to_api.WorkflowError, match=r"image_to_video: node \d+ .* has type LATENT, but output"):
        ui_to_api.convert(wf, comfy.nodes.NODE_CLASS_MAPPINGS, "image_to_video")


def test_converter_maps_widgets_skipping_frontend_only_values(comfy):
    prompt = ui_to_api.convert(load_workflow("image_to_video"), comfy.nodes.NODE_CLASS_MAPPINGS)
    sampler = next(n for n in prompt.values() if n["class_type"] == "AtomoVideoSampler")["inputs"]
    assert sampler["seed"] == 0 and sampler["steps"] == 25 and sampler["sampler_name"] == "ddim"
    assert "randomize" not in sampler.values()
    image = next(n for n in prompt.values() if n["class_type"] == "LoadImage")["inputs"]
    assert image == {"image": wb.INPUT_IMAGE}  # the upload widget's value is dropped
    assert not any(n["class_type"] == "Note" for n in prompt.values())


def test_workflows_folder_is_served_as_templates_by_the_host(comfy):
    """ComfyUI serves `<pack>/workflows/*.json` as workflow templates (app/custom_node_manager.py)."""
    from aiohttp import web

    import app.custom_node_manager as cnm

    routes = web.RouteTableDef()
    webapp = web.Application()
    cnm.CustomNodeManager().add_routes(routes, webapp, [("ComfyUI-AtomoVideo", str(WORKFLOW_DIR.parent))])
    served = [r for r in webapp.router.resources()
              if r.canonical == "/api/workflow_templates/ComfyUI-AtomoVideo"]
    assert served and Path(served[0].get_info()["directory"]) == WORKFLOW_DIR
