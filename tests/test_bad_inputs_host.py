"""Issue 15, "nothing silent": bad and hostile inputs through the real ComfyUI executor (API prompts), on the
pack's demo model (64x64, 4 frames, 2 steps). Every case must fail in the pack's node with a message naming the
node, the input and what to do, and a plain run afterwards must be bit-identical to the one before (no patch
leaked, nothing cached wrongly). Also: every FLOAT/INT input of every pack node refuses NaN and infinities."""
from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from demo_files import ensure_demo_atomovideo
from pack import module
from test_image_projection import SD15_WIDTHS, base_state_dict
from test_weight_format import Payload

pytestmark = pytest.mark.host
NAN, INF = float("nan"), float("inf")
TINY_CLIP = {"hidden_size": 64, "image_size": 224, "intermediate_size": 128, "num_attention_heads": 2,
             "num_hidden_layers": 2, "patch_size": 14, "projection_dim": 32, "hidden_act": "gelu",
             "layer_norm_eps": 1e-5, "model_type": "clip_vision_model", "num_channels": 3}
TEST_CLIP_NODE = "AtomoTestTinyCLIPVision"  # a test-only node: CLIP_VISION without a 600 MB file


# ---------------------------------------------------------------------------------------------------------------
# fixture files and the plain prompt
# ---------------------------------------------------------------------------------------------------------------
def _demo_file() -> tuple[dict, dict]:
    path, _ = ensure_demo_atomovideo()
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())


def _with_meta(meta: dict, **changes) -> dict:
    d = json.loads(meta["atomovideo"])
    d.update(changes)
    return {**meta, "atomovideo": json.dumps(d)}


@pytest.fixture(scope="module")
def files(comfy):
    """Bad and special weight files in the host's model folders; name -> file name."""
    tensors, meta = _demo_file()
    atomo, motion, ip = (comfy.models_dir / d for d in ("atomovideo", "animatediff_models", "ipadapter"))
    out = {}

    def write(key, name, t, m):
        save_file(t, str(atomo / name), metadata=m)
        out[key] = name

    write("eps", "bad15_eps.safetensors", tensors, _with_meta(meta, prediction="eps", zero_terminal_snr=False))
    write("overflow", "bad15_overflow.safetensors",
          {k: v * 1e30 if k.startswith("temporal.") and v.ndim > 1 else v for k, v in tensors.items()}, meta)
    write("json", "bad15_json.safetensors", tensors, {**meta, "atomovideo": "{not json"})
    write("sdxl", "bad15_sdxl.safetensors", tensors, _with_meta(meta, base="sdxl"))
    key = next(k for k in tensors if k.startswith("temporal.") and tensors[k].is_floating_point())
    write("nan", "bad15_nan.safetensors", {**tensors, key: torch.full_like(tensors[key], NAN)}, meta)
    write("good", "bad15_good.safetensors", tensors, meta)
    whole = (atomo / out["good"]).read_bytes()
    (atomo / "bad15_truncated.safetensors").write_bytes(whole[: len(whole) // 2])
    out["truncated"] = "bad15_truncated.safetensors"
    torch.save({"state_dict": {"a": torch.zeros(1)}, "note": Payload()}, motion / "bad15_pickled.ckpt")
    out["pickled"] = "bad15_pickled.ckpt"
    save_file(base_state_dict(SD15_WIDTHS, clip_dim=32), str(ip / "bad15_ip_sd15_unet.safetensors"))
    out["ip_other_unet"] = "bad15_ip_sd15_unet.safetensors"
    return out


@pytest.fixture(scope="module")
def clip_node(comfy, tmp_path_factory):
    """Registers a test node that returns a small real ClipVisionModel (hidden 64, projection 32)."""
    import comfy.clip_vision as cv
    import fixture_models

    cfg = tmp_path_factory.mktemp("clipvision") / "tiny.json"
    cfg.write_text(json.dumps(TINY_CLIP))
    model = cv.ClipVisionModel(str(cfg))
    model.load_sd(fixture_models.fill_random_({k: torch.empty(v.shape) for k, v in model.get_sd().items()}, 21))

    class TinyClipVision:
        RETURN_TYPES = ("CLIP_VISION",)
        FUNCTION = "load"
        CATEGORY = "testing"

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {}}

        def load(self):
            return (model,)

    comfy.nodes.NODE_CLASS_MAPPINGS[TEST_CLIP_NODE] = TinyClipVision
    yield TEST_CLIP_NODE
    comfy.nodes.NODE_CLASS_MAPPINGS.pop(TEST_CLIP_NODE, None)


def plain_prompt(weights: str) -> dict:
    """Demo base + AtomoVideo weights, image conditioning of a flat image, 2 DDIM steps, the latent saved."""
    return {
        "1": {"class_type": "AtomoVideoDemoModel", "inputs": {}},
        "2": {"class_type": "AtomoVideoLoader", "inputs": {"model": ["1", 0], "weights": weights,
                                                           "noise_schedule": "from weights"}},
        "3": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0x336699}},
        "4": {"class_type": "AtomoVideoImageConditioning", "inputs": {
            "positive": ["1", 2], "negative": ["1", 3], "vae": ["1", 1], "image": ["3", 0], "frames": 4,
            "width": 64, "height": 64, "frame_indices": "0", "resize_mode": "crop"}},
        "5": {"class_type": "AtomoVideoSampler", "inputs": {
            "model": ["2", 0], "positive": ["4", 0], "negative": ["4", 1], "latent": ["4", 2], "seed": 3,
            "steps": 2, "cfg": 2.0, "cfg_rescale": 0.7, "sampler_name": "ddim", "scheduler": "trailing",
            "denoise": 1.0}},
        "6": {"class_type": "SaveLatent", "inputs": {"samples": ["5", 0], "filename_prefix": "bad15/plain"}},
    }


def run_plain(comfy, weights: str) -> torch.Tensor:
    _, outputs = comfy.run(plain_prompt(weights))
    item = outputs["6"]["latents"][0]
    path = Path(comfy.output_dir) / item["subfolder"] / item["filename"]
    latent = load_file(str(path))["latent_tensor"]
    path.unlink()
    return latent


# ---------------------------------------------------------------------------------------------------------------
# building blocks of the bad prompts
# ---------------------------------------------------------------------------------------------------------------
def nan_image(p: dict, frames: int = 1, patch: bool = False) -> list:
    """An IMAGE holding NaN (a whole frame, or an 8x8 patch in a flat frame), made by core nodes: NaN passes
    ComfyUI's min/max checks."""
    p["n1"] = {"class_type": "SolidMask", "inputs": {"value": NAN, "width": 8 if patch else 64,
                                                     "height": 8 if patch else 64}}
    p["n2"] = {"class_type": "MaskToImage", "inputs": {"mask": ["n1", 0]}}
    src = ["n2", 0]
    if patch:
        p["n3"] = {"class_type": "ImageCompositeMasked", "inputs": {"destination": ["3", 0], "source": src,
                                                                    "x": 16, "y": 24, "resize_source": False}}
        src = ["n3", 0]
    if frames > 1:
        p["n4"] = {"class_type": "RepeatImageBatch", "inputs": {"image": src, "amount": frames}}
        src = ["n4", 0]
    return src


def video(p: dict, frames: int = 4) -> list:
    p["v1"] = {"class_type": "RepeatImageBatch", "inputs": {"image": ["3", 0], "amount": frames}}
    return ["v1", 0]


def preview(p: dict, image: list) -> None:
    p["6"] = {"class_type": "PreviewImage", "inputs": {"images": image}}


def setting(node: str, **values):
    def mutate(p, files):
        p[node]["inputs"].update(values)
    return mutate


def sampler(**values):
    return setting("5", **values)


def conditioning(**values):
    return setting("4", **values)


def weights(key: str):
    def mutate(p, files):
        p["2"]["inputs"]["weights"] = files[key]
    return mutate


def nan_latent(p, files):
    p["l1"] = {"class_type": "LatentMultiply", "inputs": {"samples": ["4", 2], "multiplier": NAN}}
    p["5"]["inputs"]["latent"] = ["l1", 0]


def nan_conditioning(p, files):
    p["c1"] = {"class_type": "ConditioningAverage", "inputs": {"conditioning_to": ["4", 0],
                                                               "conditioning_from": ["4", 1],
                                                               "conditioning_to_strength": NAN}}
    p["5"]["inputs"]["positive"] = ["c1", 0]


def nan_conditioning_image(p, files):
    p["4"]["inputs"]["image"] = nan_image(p, patch=True)


def empty_latent(frames: int, size: int):
    def mutate(p, files):
        p["l1"] = {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size,
                                                                "batch_size": frames}}
        p["5"]["inputs"]["latent"] = ["l1", 0]
    return mutate


def model_sampling(node_inputs: dict, class_type: str = "AtomoVideoModelSampling", key: str = "eps"):
    def mutate(p, files):
        p["2"]["inputs"]["weights"] = files[key]
        p["m1"] = {"class_type": class_type, "inputs": {"model": ["2", 0], **node_inputs}}
        p["5"]["inputs"]["model"] = ["m1", 0]
    return mutate


def clip_inject(image_nan: bool = False, projection: str | None = None, **values):
    def mutate(p, files):
        p["k1"] = {"class_type": TEST_CLIP_NODE, "inputs": {}}
        p["k2"] = {"class_type": "AtomoVideoCLIPVisionInject", "inputs": {
            "model": ["2", 0], "clip_vision": ["k1", 0], "image": nan_image(p) if image_nan else ["3", 0],
            "projection": files[projection] if projection else files["ip_other_unet"], "weight": 1.0,
            "start_percent": 0.0, "end_percent": 1.0, **values}}
        p["5"]["inputs"]["model"] = ["k2", 0]
    return mutate


def continue_node(frames=None, latent=None, reference=None, **values):
    def mutate(p, files):
        inputs = {"model": ["2", 0], "positive": ["1", 2], "negative": ["1", 3], "vae": ["1", 1],
                  "context_frames": 2, "new_frames": 2, "pin_context": True, "drift_strength": 0.0, **values}
        if frames == "nan":
            inputs["frames"] = nan_image(p, frames=4, patch=True)
        elif latent == "nan":
            nan_latent(p, files)
            inputs["latent"] = ["l1", 0]
        else:
            inputs["frames"] = video(p)
        if reference == "nan":
            inputs["reference"] = nan_image(p, frames=4)
        p["t1"] = {"class_type": "AtomoVideoContinue", "inputs": inputs}
        p["6"]["inputs"]["samples"] = ["t1", 2]
    return mutate


def join(bad: str, **values):
    def mutate(p, files):
        good = video(p)
        nan = nan_image(p, frames=4)
        inputs = {"video": nan if bad == "video" else good, "segment": nan if bad == "segment" else good,
                  "context_frames": 2, **values}
        p["j1"] = {"class_type": "AtomoVideoJoinSegments", "inputs": inputs}
        preview(p, ["j1", 0])
    return mutate


def long_video(image=None, given_video=None, reference=None, **values):
    def mutate(p, files):
        inputs = {"model": ["2", 0], "positive": ["1", 2], "negative": ["1", 3], "vae": ["1", 1], "width": 64,
                  "height": 64, "total_frames": 6, "segment_frames": 4, "context_frames": 2, "seed": 0, "steps": 1,
                  "cfg": 1.0, "cfg_rescale": 0.0, "sampler_name": "ddim", "scheduler": "trailing",
                  "pin_context": True, "drift_strength": 0.0, "drift_target": "context and output", **values}
        for name, which in (("image", image), ("given_video", given_video), ("reference", reference)):
            if which == "nan":
                inputs[name] = nan_image(p, frames=1 if name == "image" else 4, patch=name == "image")
        p["g1"] = {"class_type": "AtomoVideoLongVideo", "inputs": inputs}
        preview(p, ["g1", 0])
    return mutate


def metrics(bad: str):
    def mutate(p, files):
        good_video, nan = video(p), nan_image(p, frames=4 if bad == "video" else 1)
        p["6"] = {"class_type": "AtomoVideoMetrics", "inputs": {
            "video": nan if bad == "video" else good_video, "image": nan if bad == "image" else ["3", 0]}}
    return mutate


# ---------------------------------------------------------------------------------------------------------------
# the cases: (id, mutation, node, input, what the message must say, beyond the node and input)
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    id: str
    mutate: object
    node: str
    input: str
    says: str  # regex: what was found and what to do


FINITE = r"is not a finite number; set a number between"
NAN_TENSOR = r"holds \d+ NaN or infinite value\(s\).*would give a NaN video\. "
S, L, IC = "AtomoVideoSampler", "AtomoVideoLoader", "AtomoVideoImageConditioning"
MS, CV, CO = "AtomoVideoModelSampling", "AtomoVideoCLIPVisionInject", "AtomoVideoContinue"
J, LV, M = "AtomoVideoJoinSegments", "AtomoVideoLongVideo", "AtomoVideoMetrics"

CASES = [
    # AtomoVideoSampler: numbers, tensors, consistency with the conditioning, NaN made while sampling
    Case("sampler-cfg-nan", sampler(cfg=NAN), S, "cfg", "NaN " + FINITE + r" 0\.0 and 100\.0 \(default 7\.5\)"),
    Case("sampler-cfg_rescale-nan", sampler(cfg_rescale=NAN), S, "cfg_rescale", "NaN " + FINITE),
    Case("sampler-denoise-nan", sampler(denoise=NAN), S, "denoise", "NaN " + FINITE + r" 0\.0 and 1\.0"),
    Case("sampler-latent-nan", nan_latent, S, "latent", "the LATENT " + NAN_TENSOR + "Check the node that produced"),
    Case("sampler-positive-nan", nan_conditioning, S, "positive",
         r"the CONDITIONING \(entry 0 embedding\) " + NAN_TENSOR + "Encode the prompt"),
    Case("sampler-frames-6-vs-4", empty_latent(6, 64), S, "latent",
         r"the latent has 6 frames but the image condition in 'positive' was made for 4 frames .*repeat it.*make "
         r"the latent with the same AtomoVideo Image Conditioning"),
    Case("sampler-frames-2-vs-4", empty_latent(2, 64), S, "latent", r"has 2 frames but .* made for 4 frames"),
    Case("sampler-size-128-vs-64", empty_latent(4, 128), S, "latent",
         r"the latent is 128x128 pixels \(16x16 latent\) but the image condition in 'positive' was made for "
         r"64x64; make the latent with the same"),
    Case("sampler-nan-while-sampling", weights("overflow"), S, "model",
         r"sampling produced NaN/Inf values, first at step 1 of 2.*lower cfg, check the weights"),
    Case("ksampler-v-prediction-on-eps", model_sampling({"sampling": "v_prediction", "zsnr": True},
                                                        "ModelSamplingDiscrete"), S, "model",
         r"'bad15_eps\.safetensors' predict noise \(eps.*Remove it: AtomoVideo Loader with noise_schedule "
         r"'from weights'"),
    # AtomoVideoModelSampling
    Case("model-sampling-on-eps-weights", model_sampling({"cfg_rescale": 0.7}), MS, "model",
         r"'bad15_eps\.safetensors' predict noise \(eps, as AnimateDiff and PIA do\); AtomoVideo Model Sampling "
         r"gives v-prediction.*Remove it"),
    Case("model-sampling-cfg_rescale-nan", model_sampling({"cfg_rescale": NAN}, key="good"), MS, "cfg_rescale",
         "NaN " + FINITE + r" 0\.0 and 1\.0 \(default 0\.7\)"),
    # AtomoVideoLoader: files
    Case("loader-pickled-code", weights("pickled"), L, "weights",
         r"pickled file holding Python objects.*could run code.*Get the \.safetensors version of this file from its "
         r"source"),
    Case("loader-truncated", weights("truncated"), L, "weights",
         r"not a readable safetensors file \(.*cut short.*\): download it again from its source"),
    Case("loader-metadata-json", weights("json"), L, "weights",
         r"metadata is not valid JSON \(error at character 1\): .*get the file again from its source"),
    Case("loader-sdxl-family", weights("sdxl"), L, "weights",
         r"base family 'sdxl', but this pack supports 'sd15' only: use AtomoVideo weights made for SD1\.5"),
    Case("loader-nan-tensor", weights("nan"), L, "weights",
         r"tensor 'temporal\..*' holds NaN or infinite values .*download it again from its source"),
    # AtomoVideoImageConditioning
    Case("conditioning-image-nan-patch", nan_conditioning_image, IC, "image",
         r"the IMAGE holds 192 NaN or infinite value\(s\) of 12288; .*Load or make the image again"),
    Case("conditioning-frame_indices-double-comma", conditioning(frame_indices="0,,1"), IC, "frame_indices",
         r"'0,,1' has an empty entry .*write the indices separated by single commas"),
    Case("conditioning-frame_indices-trailing-comma", conditioning(frame_indices="0,"), IC, "frame_indices",
         r"'0,' has an empty entry"),
    Case("conditioning-frame_indices-word", conditioning(frame_indices="first"), IC, "frame_indices",
         r"'first' in 'first' is not a frame index; write integers and ranges like"),
    Case("conditioning-frame_indices-beyond", conditioning(frame_indices="4"), IC, "frame_indices",
         r"frame 4 is outside the video of 4 frames.*use 0\.\.3"),
    Case("conditioning-width-not-multiple-of-8", conditioning(width=60), IC, "width",
         r"width 60 is not a multiple of 8.*use 56 or 64"),
    Case("conditioning-two-indices-one-image", conditioning(frame_indices="0,1"), IC, "image",
         r"1 image\(s\) for 2 given frame\(s\).*give exactly one image per frame index"),
    # AtomoVideoCLIPVisionInject
    Case("clip-weight-nan", clip_inject(weight=NAN), CV, "weight", "NaN " + FINITE + r" -1\.0 and 5\.0"),
    Case("clip-start-nan", clip_inject(start_percent=NAN), CV, "start_percent", "NaN " + FINITE),
    Case("clip-end-nan", clip_inject(end_percent=NAN), CV, "end_percent", "NaN " + FINITE),
    Case("clip-end-before-start", clip_inject(start_percent=0.8, end_percent=0.2), CV, "end_percent",
         r"end 0\.2 is before start 0\.8.*set end_percent to at least start_percent"),
    Case("clip-image-nan", clip_inject(image_nan=True), CV, "image", "the IMAGE " + NAN_TENSOR),
    Case("clip-ipadapter-other-unet", clip_inject(), CV, "projection",
         r"16 attention layers but the model has \d+ cross-attention sites.*made for a different UNet\. Choose an "
         r"IP-Adapter made for this model's UNet"),
    # AtomoVideoContinue
    Case("continue-frames-nan", continue_node(frames="nan"), CO, "frames", "the IMAGE " + NAN_TENSOR),
    Case("continue-latent-nan", continue_node(latent="nan"), CO, "latent", "the LATENT " + NAN_TENSOR),
    Case("continue-reference-nan", continue_node(reference="nan", drift_strength=1.0), CO, "reference",
         "the IMAGE " + NAN_TENSOR),
    Case("continue-drift-nan", continue_node(drift_strength=NAN), CO, "drift_strength", "NaN " + FINITE),
    # AtomoVideoJoinSegments
    Case("join-video-nan", join("video"), J, "video", "the IMAGE " + NAN_TENSOR),
    Case("join-segment-nan", join("segment"), J, "segment", r"the IMAGE .* \(in batch item\(s\) 0, 1, 2, 3 of 4\)"),
    # AtomoVideoLongVideo
    Case("long-cfg-nan", long_video(cfg=NAN), LV, "cfg", "NaN " + FINITE),
    Case("long-cfg_rescale-nan", long_video(cfg_rescale=NAN), LV, "cfg_rescale", "NaN " + FINITE),
    Case("long-drift-nan", long_video(drift_strength=NAN), LV, "drift_strength", "NaN " + FINITE),
    Case("long-image-nan", long_video(image="nan"), LV, "image", "the IMAGE " + NAN_TENSOR),
    Case("long-given-video-nan", long_video(given_video="nan"), LV, "given_video", "the IMAGE " + NAN_TENSOR),
    Case("long-reference-nan", long_video(reference="nan"), LV, "reference", "the IMAGE " + NAN_TENSOR),
    # AtomoVideoMetrics
    Case("metrics-video-nan", metrics("video"), M, "video", "the IMAGE " + NAN_TENSOR),
    Case("metrics-image-nan", metrics("image"), M, "image", "the IMAGE " + NAN_TENSOR),
]


@pytest.fixture(scope="module")
def baseline(comfy, files, clip_node):
    first = run_plain(comfy, files["good"])
    assert first.shape == (4, 4, 8, 8) and torch.isfinite(first).all() and first.std() > 0.05
    return first


def test_there_are_at_least_forty_cases_covering_every_node_with_inputs(comfy):
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)
    nodes = {c.node for c in CASES}
    pack_nodes = {cls.define_schema().node_id for cls in module("nodes", "NODE_LIST")}
    assert pack_nodes - nodes == {"AtomoVideoDemoModel"}  # its one input is a combo of bundled files


def queue_time_message(errors, case) -> str:
    """The pack's message from a prompt refused at validation; fails unless the pack's validate_inputs refused it."""
    assert {node["class_type"] for node in errors[3].values()} == {case.node}, errors
    node_errors = [e for node in errors[3].values() for e in node["errors"]]
    assert node_errors and all(e["type"] == "custom_validation_failed" for e in node_errors), \
        f"refused at validation, not by the pack: {errors}"
    assert case.input in QUEUE_TIME_INPUTS.get(case.node, ()), f"'{case.id}' refused when queued: {errors}"
    return node_errors[0]["details"].split(" - ", 1)[1]


# inputs the pack checks when the prompt is queued (atomo_host/file_checks.py); the rest are checked when run
QUEUE_TIME_INPUTS = {"AtomoVideoLoader": ("weights",)}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_is_refused_by_the_node_naming_input_and_remedy(comfy, files, baseline, case):
    prompt = plain_prompt(files["good"])
    case.mutate(prompt, files)
    ex, errors = comfy.run(copy.deepcopy(prompt), expect_failure=True)
    if ex is None:  # refused when queued: only by the pack's own validate_inputs (file inputs), with its message
        message = queue_time_message(errors, case)
    else:
        assert errors and errors[0]["node_type"] == case.node, errors
        message = errors[0]["exception_message"].split("\n")[0]
        assert errors[0]["exception_type"].endswith(("AtomoVideoError", "WeightFormatError")), errors[0]
    assert message.startswith(f"{case.node}, input '{case.input}': "), message
    assert re.search(case.says, message), f"{case.says!r} not in {message!r}"
    assert "Traceback" not in message and "weights_only=False" not in message
    if os.environ.get("ATOMO_CASE_TABLE"):  # the table of cases for a closing note: node | input | message
        with open(os.environ["ATOMO_CASE_TABLE"], "a") as table:
            table.write(f"| {case.node} | {case.input} | {message.split(': ', 1)[1]} |\n")
    # a plain run afterwards is bit-identical to the one before
    after = run_plain(comfy, files["good"])
    assert torch.equal(after, baseline), f"plain run changed after '{case.id}': max diff {(after - baseline).abs().max()}"


# ---------------------------------------------------------------------------------------------------------------
# every FLOAT/INT input of every pack node, enumerated from the schemas
# ---------------------------------------------------------------------------------------------------------------
def test_every_number_input_of_every_node_refuses_nan_and_infinities(comfy):
    errors = module("atomo_core.errors", "AtomoVideoError")
    checked = []
    for cls in module("nodes", "NODE_LIST"):
        schema = cls.define_schema()
        numbers = module("atomo_host.input_checks").number_inputs(schema)
        defaults = {i.id: i.default for i in numbers}
        for spec in numbers:
            for bad, shown in ((NAN, "NaN"), (INF, "+inf"), (-INF, "-inf")):
                with pytest.raises(errors) as e:
                    cls.execute(**{**defaults, spec.id: bad})
                assert str(e.value).startswith(f"{schema.node_id}, input '{spec.id}': {shown} is not a finite number; "
                                               f"set "), str(e.value)
                assert f"(default {spec.default})" in str(e.value)
            checked.append((schema.node_id, spec.id))
    # the same count from the host's own view of the nodes (V1 INPUT_TYPES), so none was skipped
    host_view = [(cls.define_schema().node_id, name) for cls in module("nodes", "NODE_LIST")
                 for group in ("required", "optional")
                 for name, spec in comfy.node_class(cls.define_schema().node_id).INPUT_TYPES().get(group, {}).items()
                 if spec[0] in ("INT", "FLOAT")]
    assert sorted(checked) == sorted(host_view) and len(checked) >= 25
    assert {n for n, _ in checked} >= {"AtomoVideoSampler", "AtomoVideoLongVideo", "AtomoVideoContinue",
                                       "AtomoVideoCLIPVisionInject", "AtomoVideoModelSampling",
                                       "AtomoVideoImageConditioning", "AtomoVideoJoinSegments"}


def test_the_number_check_passes_defaults_and_refuses_fractional_integers(comfy):
    checks = module("atomo_host.input_checks")
    specs = [s for cls in module("nodes", "NODE_LIST") for s in checks.number_inputs(cls.define_schema())]
    for spec in specs:  # the check refuses only bad values
        checks.check_number(spec, spec.default)
    ints = [s for s in specs if isinstance(s, checks.io.Int.Input)]
    assert ints
    with pytest.raises(module("atomo_core.errors", "AtomoVideoError"), match=r"2\.5 is not an integer"):
        checks.check_number(ints[0], 2.5)
    with pytest.raises(module("atomo_core.errors", "AtomoVideoError"), match=r"got '3' \(str\), not an integer"):
        checks.check_number(ints[0], "3")
