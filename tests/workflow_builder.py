"""Writes the shipped UI workflows (`workflows/*.json`) from small Python descriptions.

Each workflow is described by its nodes (type, position, the widget values that differ from the schema
defaults) and links (from node + output, to node + input). Widget order, socket types and frontend-only values
(`control_after_generate`, upload widgets) come from the node schemas registered in the real host, the same
schemas the pack's converter (`atomo_host/ui_workflow.py`) checks against, so a workflow cannot be written with a
widget list that does not fit.

    COMFYUI_PATH=/path/to/ComfyUI python3 tests/workflow_builder.py        # rewrite workflows/*.json
    COMFYUI_PATH=/path/to/ComfyUI python3 tests/workflow_builder.py --check  # exit 1 if a file differs

`tests/test_workflows_host.py` asserts that the committed files equal what this builds, and executes them.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORKFLOWS = REPO / "workflows"
if str(HERE) not in sys.path:
    sys.path.append(str(HERE))

from pack import module  # noqa: E402
from workflow_layout import rectangles, view_for  # noqa: E402

u = module("atomo_host.ui_workflow")

# Model files users put in place: the common public names where one exists.
CHECKPOINT = "v1-5-pruned-emaonly.safetensors"                 # models/checkpoints
ATOMO_WEIGHTS = "atomovideo_sd15.safetensors"                  # models/atomovideo (no public release)
CLIP_VISION = "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"    # models/clip_vision
IPADAPTER = "ip-adapter_sd15.safetensors"                      # models/ipadapter
PIA = "pia.ckpt"                                               # models/animatediff_models
LORA = "your_sd15_lora.safetensors"                            # models/loras (any SD1.5 LoRA)
CONTROLNET = "control_v11p_sd15_canny.pth"                     # models/controlnet
INPUT_IMAGE = "example.png"                                    # ComfyUI/input (ships with ComfyUI)
CONTROL_VIDEO = "control_video.mp4"                            # ComfyUI/input
# The demo ships its files: the base, VAE and conditioning come from AtomoVideo Demo Model, the AtomoVideo file
# from the pack's atomo_demo/weights/atomovideo (a path of the `atomovideo` folder), the picture from
# atomo_demo/assets (copied into ComfyUI/input by `python -m atomo_demo run`, by hand for the UI).
DEMO_WEIGHTS = "demo_atomovideo.safetensors"
DEMO_IMAGE = "demo_input.png"
DEMO_SIZE, DEMO_FRAMES, DEMO_STEPS = 64, 16, 12
DEMO_SEGMENTS, DEMO_CONTEXT = 4, 4

POSITIVE = "a red fox walking through fresh snow, soft morning light, detailed fur, high quality"
NEGATIVE = "blurry, low quality, distorted, watermark, text"

NOTE_COLOR, NOTE_BGCOLOR = "#432", "#653"
TITLE_HEIGHT, SLOT_HEIGHT, WIDGET_HEIGHT = 30, 22, 24
IMAGE_NODE_HEIGHT = 440  # LoadImage / LoadVideo with their preview


class Graph:
    def __init__(self, node_classes: dict):
        self.classes = node_classes
        self.nodes: list[dict] = []
        self.links: list[list] = []

    def _node(self, nid: int) -> dict:
        return next(n for n in self.nodes if n["id"] == nid)

    def add(self, ntype: str, pos, widgets: dict | None = None, *, title: str | None = None,
            width: int = 320, height: int | None = None, control: str = "randomize") -> int:
        nid = len(self.nodes) + 1
        widgets = dict(widgets or {})
        if ntype in u.FRONTEND_ONLY:
            text = widgets.pop("text")
            per_line = (width - 40) // 8.7  # characters of the note's monospace font per line
            lines = sum(max(1, int(len(line) // per_line) + 1) for line in text.split("\n"))
            node = {"id": nid, "type": ntype, "pos": list(pos), "size": [width, 40 + 17 * lines],
                    "flags": {}, "order": 0, "mode": 0, "inputs": [], "outputs": [], "properties": {},
                    "widgets_values": [text], "color": NOTE_COLOR, "bgcolor": NOTE_BGCOLOR}
            if title:
                node["title"] = title
            self.nodes.append(node)
            return nid
        cls = self.classes[ntype]
        specs = u.input_specs(cls)
        inputs, values, n_widgets = [], [], 0
        for name, (spec, required) in specs.items():
            if not u.is_widget(spec):
                entry = {"name": name, "type": u.type_name(spec[0]), "link": None}
                if not required:
                    entry["shape"] = 7  # the frontend's "optional input" marker
                inputs.append(entry)
                continue
            n_widgets += 1
            opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if name in widgets:
                value = widgets.pop(name)
            elif "default" in opts:
                value = opts["default"]
            elif u.type_name(spec[0]) == "COMBO":
                raise ValueError(f"{ntype}: widget '{name}' needs an explicit value (a combo without default)")
            else:
                raise ValueError(f"{ntype}: widget '{name}' has no default; give a value")
            values.append(value)
            extra = u.extra_frontend_values(name, spec)
            if extra and u.type_name(spec[0]) in ("INT", "FLOAT") and opts.get(
                    "control_after_generate", name in ("seed", "noise_seed")):
                values.append(control)
                extra -= 1
            if extra:
                values.append("image")  # the upload button's saved value
        if widgets:
            raise ValueError(f"{ntype}: unknown widgets {sorted(widgets)}")
        names = getattr(cls, "RETURN_NAMES", None) or [u.type_name(t) for t in cls.RETURN_TYPES]
        outputs = [{"name": str(nm), "type": u.type_name(t), "links": [], "slot_index": i}
                   for i, (nm, t) in enumerate(zip(names, cls.RETURN_TYPES))]
        rows = max(len(inputs), len(outputs))
        height = height or TITLE_HEIGHT + SLOT_HEIGHT * rows + WIDGET_HEIGHT * n_widgets + 10
        node = {"id": nid, "type": ntype, "pos": list(pos), "size": [width, height], "flags": {}, "order": 0,
                "mode": 0, "inputs": inputs, "outputs": outputs,
                "properties": {"Node name for S&R": ntype}, "widgets_values": values}
        if title:
            node["title"] = title
        self.nodes.append(node)
        return nid

    def link(self, src: int, out, dst: int, inp: str) -> None:
        s, d = self._node(src), self._node(dst)
        slot = out if isinstance(out, int) else next(i for i, o in enumerate(s["outputs"]) if o["name"] == out)
        dslot = next(i for i, x in enumerate(d["inputs"]) if x["name"] == inp)
        lid = len(self.links) + 1
        ltype = s["outputs"][slot]["type"]
        self.links.append([lid, src, slot, dst, dslot, ltype])
        s["outputs"][slot]["links"].append(lid)
        d["inputs"][dslot]["link"] = lid

    def workflow(self) -> dict:
        # execution order as the frontend computes it: sources first
        order, done = [], set()

        def visit(nid):
            if nid in done:
                return
            for x in self._node(nid)["inputs"]:
                if x["link"] is not None:
                    visit(next(link[1] for link in self.links if link[0] == x["link"]))
            done.add(nid)
            order.append(nid)

        for n in self.nodes:
            visit(n["id"])
        for i, nid in enumerate(order):
            self._node(nid)["order"] = i
        for n in self.nodes:
            for o in n["outputs"]:
                if not o["links"]:
                    o["links"] = None
        return {"last_node_id": len(self.nodes), "last_link_id": len(self.links), "nodes": self.nodes,
                "links": self.links, "groups": [], "config": {},
                "extra": {"ds": view_for(rectangles(self.nodes))}, "version": 0.4}


def note(lines: list[str]) -> str:
    return "\n".join(lines)


MODELS_HEADER = "Model files (put them here, then press R or Refresh):"


def text_encoders(g: Graph, clip_src, x=0, y=200):
    pos = g.add("CLIPTextEncode", (x, y), {"text": POSITIVE}, title="Positive prompt", width=400)
    neg = g.add("CLIPTextEncode", (x, y + 130), {"text": NEGATIVE}, title="Negative prompt", width=400)
    g.link(*clip_src, pos, "clip")
    g.link(*clip_src, neg, "clip")
    return pos, neg


def video_tail(g: Graph, sampler: int, vae_src, prefix: str, x: int, y: int = 0, fps: float = 8.0,
               images_src=None, save_width: int = 360):
    """VAE decode -> SaveAnimatedWEBP, and CreateVideo -> SaveVideo (mp4); or from `images_src` (node, slot).
    The save nodes sit in a column right of the decode column, each with room below for its preview."""
    if images_src is None:
        dec = g.add("VAEDecode", (x, y), width=220)
        g.link(sampler, 0, dec, "samples")
        g.link(*vae_src, dec, "vae")
    else:
        dec = images_src[0]
    webp = g.add("SaveAnimatedWEBP", (x + 260, y), {"filename_prefix": f"AtomoVideo/{prefix}", "fps": fps,
                                                  "lossless": False, "quality": 90, "method": "default"},
                 width=save_width)
    g.link(dec, 0, webp, "images")
    cv = g.add("CreateVideo", (x, y + (150 if images_src is None else 0)), {"fps": fps}, width=220)
    g.link(dec, 0, cv, "images")
    below_webp = y + g._node(webp)["size"][1] + save_width + 60
    sv = g.add("SaveVideo", (x + 260, below_webp), {"filename_prefix": f"video/AtomoVideo_{prefix}",
                                                    "format": "mp4", "codec": "h264"}, width=save_width)
    g.link(cv, 0, sv, "video")
    return dec


def sampler_node(g: Graph, pos, model_src, cond: int, *, cfg_rescale: float = 0.7):
    s = g.add("AtomoVideoSampler", pos, {"seed": 0, "steps": 25, "cfg": 7.5, "cfg_rescale": cfg_rescale,
                                         "sampler_name": "ddim", "scheduler": "trailing", "denoise": 1.0},
              width=360)
    g.link(*model_src, s, "model")
    g.link(cond, "positive", s, "positive")
    g.link(cond, "negative", s, "negative")
    g.link(cond, "latent", s, "latent")
    return s


def image_to_video_graph(g: Graph, *, lora: bool = False, controlnet: bool = False, prefix="image_to_video"):
    ckpt = g.add("CheckpointLoaderSimple", (0, 0), {"ckpt_name": CHECKPOINT}, width=400)
    model_src, clip_src = (ckpt, 0), (ckpt, 1)
    if lora:
        lo = g.add("LoraLoader", (0, 160), {"lora_name": LORA, "strength_model": 0.8, "strength_clip": 0.8},
                   width=400)
        g.link(ckpt, 0, lo, "model")
        g.link(ckpt, 1, lo, "clip")
        model_src, clip_src = (lo, 0), (lo, 1)
    pos, neg = text_encoders(g, clip_src, 0, 350 if lora else 200)
    img_y = 610 if lora else 460
    img = g.add("LoadImage", (0, img_y), {"image": INPUT_IMAGE}, title="Input image (first frame)",
                width=400, height=IMAGE_NODE_HEIGHT)
    loader = g.add("AtomoVideoLoader", (460, 0), {"weights": ATOMO_WEIGHTS}, width=380)
    g.link(*model_src, loader, "model")
    cvl = g.add("CLIPVisionLoader", (460, 220), {"clip_name": CLIP_VISION}, width=380)
    inj = g.add("AtomoVideoCLIPVisionInject", (460, 350), {"projection": "from AtomoVideo weights"}, width=380)
    g.link(loader, 0, inj, "model")
    g.link(cvl, 0, inj, "clip_vision")
    g.link(img, 0, inj, "image")
    cond_pos, cond_neg = (pos, 0), (neg, 0)
    if controlnet:
        cnl = g.add("ControlNetLoader", (460, 610), {"control_net_name": CONTROLNET}, width=380)
        vid = g.add("LoadVideo", (900, 610), {"file": CONTROL_VIDEO},
                    title="Control video (one frame per video frame)", width=360, height=IMAGE_NODE_HEIGHT)
        comp = g.add("GetVideoComponents", (460, 740), width=380)
        g.link(vid, 0, comp, "video")
        canny = g.add("Canny", (460, 890), {"low_threshold": 0.4, "high_threshold": 0.8}, width=380)
        g.link(comp, "images", canny, "image")
        apply = g.add("ControlNetApplyAdvanced", (900, 330), {"strength": 0.8, "start_percent": 0.0,
                                                               "end_percent": 1.0}, width=360)
        g.link(pos, 0, apply, "positive")
        g.link(neg, 0, apply, "negative")
        g.link(cnl, 0, apply, "control_net")
        g.link(canny, 0, apply, "image")
        cond_pos, cond_neg = (apply, 0), (apply, 1)
    cond = g.add("AtomoVideoImageConditioning", (900, 0), {"frames": 16, "width": 512, "height": 512,
                                                           "frame_indices": "0", "resize_mode": "crop"}, width=360)
    g.link(*cond_pos, cond, "positive")
    g.link(*cond_neg, cond, "negative")
    g.link(ckpt, 2, cond, "vae")
    g.link(img, 0, cond, "image")
    # with a ControlNet the sampler gets a column of its own (the ControlNet nodes fill the one below the
    # conditioning), the read-me note goes below it; without, the sampler goes below the conditioning
    s = sampler_node(g, (1300, 0) if controlnet else (900, 330), (inj, 0), cond)
    video_tail(g, s, (ckpt, 2), prefix, 1700 if controlnet else 1300)
    return ckpt


def build_image_to_video(classes: dict) -> dict:
    g = Graph(classes)
    image_to_video_graph(g)
    g.add("Note", (460, 610), {"text": note([
        "AtomoVideo image-to-video: the input image becomes frame 0 (image latent + frame mask) and is injected "
        "into every cross-attention (CLIP image tokens); the sampler generates 16 frames from pure noise with "
        "zero-SNR v-prediction (ddim, trailing, CFG rescale 0.7).",
        "",
        MODELS_HEADER,
        f"- models/checkpoints/{CHECKPOINT} (or any SD1.5 checkpoint)",
        f"- models/atomovideo/{ATOMO_WEIGHTS} (an AtomoVideo temporal-layer file; no public release)",
        f"- models/clip_vision/{CLIP_VISION}",
        f"- input/{INPUT_IMAGE} (or upload your own image)",
        "",
        "If your AtomoVideo file has no image projection, put ip-adapter_sd15.safetensors in models/ipadapter/ "
        "and select it as 'projection'.",
        "Outputs: output/AtomoVideo/image_to_video_*.webp and output/video/AtomoVideo_image_to_video_*.mp4.",
    ])}, title="Read me: models", width=380)
    return g.workflow()


def build_text_to_video(classes: dict) -> dict:
    g = Graph(classes)
    ckpt = g.add("CheckpointLoaderSimple", (0, 0), {"ckpt_name": CHECKPOINT}, width=400)
    pos, neg = text_encoders(g, (ckpt, 1), 0, 200)
    empty = g.add("EmptyLatentImage", (0, 460), {"width": 512, "height": 512, "batch_size": 1}, width=400)
    ks = g.add("KSampler", (460, 0), {"seed": 0, "steps": 25, "cfg": 7.0, "sampler_name": "euler",
                                      "scheduler": "normal", "denoise": 1.0}, title="First frame (text-to-image)",
               width=340)
    g.link(ckpt, 0, ks, "model")
    g.link(pos, 0, ks, "positive")
    g.link(neg, 0, ks, "negative")
    g.link(empty, 0, ks, "latent_image")
    first = g.add("VAEDecode", (0, 650), title="First frame", width=220)
    g.link(ks, 0, first, "samples")
    g.link(ckpt, 2, first, "vae")
    prev = g.add("PreviewImage", (460, 660), width=340)
    g.link(first, 0, prev, "images")
    loader = g.add("AtomoVideoLoader", (860, 0), {"weights": ATOMO_WEIGHTS}, width=380)
    g.link(ckpt, 0, loader, "model")
    cvl = g.add("CLIPVisionLoader", (860, 220), {"clip_name": CLIP_VISION}, width=380)
    inj = g.add("AtomoVideoCLIPVisionInject", (860, 350), {"projection": "from AtomoVideo weights"}, width=380)
    g.link(loader, 0, inj, "model")
    g.link(cvl, 0, inj, "clip_vision")
    g.link(first, 0, inj, "image")
    cond = g.add("AtomoVideoImageConditioning", (1300, 0), {"frames": 16, "width": 512, "height": 512,
                                                            "frame_indices": "0", "resize_mode": "crop"}, width=360)
    g.link(pos, 0, cond, "positive")
    g.link(neg, 0, cond, "negative")
    g.link(ckpt, 2, cond, "vae")
    g.link(first, 0, cond, "image")
    s = sampler_node(g, (1300, 330), (inj, 0), cond)
    video_tail(g, s, (ckpt, 2), "text_to_video", 1700)
    g.add("Note", (860, 610), {"text": note([
        "AtomoVideo text-to-video: the checkpoint first makes one image from the prompt (KSampler, ordinary "
        "text-to-image), then AtomoVideo animates it as in image-to-video (frame 0 given, 16 frames generated).",
        "",
        MODELS_HEADER,
        f"- models/checkpoints/{CHECKPOINT} (or any SD1.5 checkpoint)",
        f"- models/atomovideo/{ATOMO_WEIGHTS} (an AtomoVideo temporal-layer file; no public release)",
        f"- models/clip_vision/{CLIP_VISION}",
        "",
        "Change the seed of 'First frame' to get another picture; the AtomoVideo Sampler's seed changes the motion.",
    ])}, title="Read me: models", width=380)
    return g.workflow()


def build_public_weights(classes: dict) -> dict:
    g = Graph(classes)
    ckpt = g.add("CheckpointLoaderSimple", (0, 0), {"ckpt_name": CHECKPOINT}, width=400)
    pos, neg = text_encoders(g, (ckpt, 1), 0, 200)
    img = g.add("LoadImage", (0, 460), {"image": INPUT_IMAGE}, title="Input image", width=400,
                height=IMAGE_NODE_HEIGHT)
    loader = g.add("AtomoVideoLoader", (460, 0), {"weights": PIA, "pia_motion": "animation (moderate motion)"},
                   title="Load PIA (AtomoVideo Loader)", width=380)
    g.link(ckpt, 0, loader, "model")
    cvl = g.add("CLIPVisionLoader", (460, 220), {"clip_name": CLIP_VISION}, width=380)
    inj = g.add("AtomoVideoCLIPVisionInject", (460, 350), {"projection": IPADAPTER, "weight": 0.6},
                title="IP-Adapter (AtomoVideo CLIP Vision Injection)", width=380)
    g.link(loader, 0, inj, "model")
    g.link(cvl, 0, inj, "clip_vision")
    g.link(img, 0, inj, "image")
    cond = g.add("AtomoVideoImageConditioning", (900, 0), {"frames": 16, "width": 512, "height": 512,
                                                           "frame_indices": "0", "resize_mode": "crop"}, width=360)
    g.link(pos, 0, cond, "positive")
    g.link(neg, 0, cond, "negative")
    g.link(ckpt, 2, cond, "vae")
    g.link(img, 0, cond, "image")
    s = sampler_node(g, (900, 330), (inj, 0), cond, cfg_rescale=0.0)
    video_tail(g, s, (ckpt, 2), "public_weights", 1300)
    g.add("Note", (460, 610), {"text": note([
        "Public weights: PIA (Personalized Image Animator) loaded through AtomoVideo Loader, an IP-Adapter "
        "through AtomoVideo CLIP Vision Injection. PIA is an eps model: the loader switches to its linear beta "
        "schedule ('from weights'); CFG rescale is off. 'pia_motion' picks the paper's motion preset.",
        "",
        MODELS_HEADER,
        f"- models/checkpoints/{CHECKPOINT} (or any SD1.5 checkpoint)",
        f"- models/animatediff_models/{PIA} (PIA, shared with AnimateDiff-Evolved)",
        f"- models/ipadapter/{IPADAPTER} (IP-Adapter SD1.5; plus and full-face work too)",
        f"- models/clip_vision/{CLIP_VISION} (the ViT-H encoder IP-Adapter SD1.5 was trained with)",
        "",
        "AnimateDiff motion modules (mm_sd_v15_v2.ckpt, v3_sd15_mm.ckpt, AnimateLCM) from the same folder load "
        "through the same loader.",
    ])}, title="Read me: models", width=380)
    return g.workflow()


def build_lora_controlnet(classes: dict) -> dict:
    g = Graph(classes)
    image_to_video_graph(g, lora=True, controlnet=True, prefix="lora_controlnet")
    g.add("Note", (1300, 720), {"text": note([
        "Image-to-video with a LoRA (applied to the checkpoint before the temporal layers; it keeps working "
        "because AtomoVideo leaves the spatial weights alone) and a per-frame ControlNet: one Canny edge map per "
        "frame of the control video. The control video needs at least as many frames as 'frames' (extra frames "
        "are ignored; a single image is used for every frame).",
        "",
        MODELS_HEADER,
        f"- models/checkpoints/{CHECKPOINT} (or any SD1.5 checkpoint)",
        f"- models/loras/{LORA} (any SD1.5 LoRA)",
        f"- models/controlnet/{CONTROLNET} (ControlNet 1.1 Canny for SD1.5)",
        f"- models/atomovideo/{ATOMO_WEIGHTS} (an AtomoVideo temporal-layer file; no public release)",
        f"- models/clip_vision/{CLIP_VISION}",
        f"- input/{INPUT_IMAGE} and input/{CONTROL_VIDEO} (upload your own)",
    ])}, title="Read me: models", width=360)
    return g.workflow()


def build_long_video(classes: dict) -> dict:
    g = Graph(classes)
    ckpt = g.add("CheckpointLoaderSimple", (0, 0), {"ckpt_name": CHECKPOINT}, width=400)
    pos, neg = text_encoders(g, (ckpt, 1), 0, 200)
    img = g.add("LoadImage", (0, 460), {"image": INPUT_IMAGE}, title="Start image (frame 0)", width=400,
                height=IMAGE_NODE_HEIGHT)
    loader = g.add("AtomoVideoLoader", (460, 0), {"weights": ATOMO_WEIGHTS}, width=380)
    g.link(ckpt, 0, loader, "model")
    cvl = g.add("CLIPVisionLoader", (460, 220), {"clip_name": CLIP_VISION}, width=380)
    inj = g.add("AtomoVideoCLIPVisionInject", (460, 350), {"projection": "from AtomoVideo weights"}, width=380)
    g.link(loader, 0, inj, "model")
    g.link(cvl, 0, inj, "clip_vision")
    g.link(img, 0, inj, "image")
    long = g.add("AtomoVideoLongVideo", (900, 0), {
        "width": 512, "height": 512, "total_frames": 48, "segment_frames": 16, "context_frames": 4, "seed": 0,
        "steps": 25, "cfg": 7.5, "cfg_rescale": 0.7, "sampler_name": "ddim", "scheduler": "trailing",
        "pin_context": True, "drift_strength": 1.0}, width=380)
    g.link(inj, 0, long, "model")
    g.link(pos, 0, long, "positive")
    g.link(neg, 0, long, "negative")
    g.link(ckpt, 2, long, "vae")
    g.link(img, 0, long, "image")
    g.link(img, 0, long, "reference")
    video_tail(g, None, None, "long_video", 1320, images_src=(long, 0))
    g.add("Note", (460, 610), {"text": note([
        "AtomoVideo long video by frame continuation: 48 frames in segments of 16; each segment after the first "
        "is given the previous segment's last 4 frames (image latent + mask) and continues them. Drift control "
        "keeps colour and brightness on the start image (reference). One run, one progress bar over all segments.",
        "",
        MODELS_HEADER,
        f"- models/checkpoints/{CHECKPOINT} (or any SD1.5 checkpoint)",
        f"- models/atomovideo/{ATOMO_WEIGHTS} (an AtomoVideo temporal-layer file; no public release)",
        f"- models/clip_vision/{CLIP_VISION}",
        f"- input/{INPUT_IMAGE} (or upload your own image)",
        "",
        "segment_frames must not exceed the frames the weights support (usually 16). To continue an existing "
        "video, connect it to 'given_video' (e.g. Load Video -> Get Video Components).",
    ])}, title="Read me: models", width=380)
    return g.workflow()


def build_demo(classes: dict) -> dict:
    g = Graph(classes)
    img = g.add("LoadImage", (0, 0), {"image": DEMO_IMAGE}, title="Input image (first frame)", width=400,
                height=320)
    demo = g.add("AtomoVideoDemoModel", (0, 380), width=400)
    loader = g.add("AtomoVideoLoader", (0, 590), {"weights": DEMO_WEIGHTS}, width=400)
    g.link(demo, "MODEL", loader, "model")
    cond = g.add("AtomoVideoImageConditioning", (460, 0), {
        "frames": DEMO_FRAMES, "width": DEMO_SIZE, "height": DEMO_SIZE, "frame_indices": "0",
        "resize_mode": "crop"}, width=380)
    g.link(demo, "positive", cond, "positive")
    g.link(demo, "negative", cond, "negative")
    g.link(demo, "VAE", cond, "vae")
    g.link(img, 0, cond, "image")
    s = g.add("AtomoVideoSampler", (460, 330), {"seed": 0, "steps": DEMO_STEPS, "cfg": 1.0, "cfg_rescale": 0.0,
                                                "sampler_name": "ddim", "scheduler": "trailing", "denoise": 1.0},
              title="Image to video", width=380, control="fixed")
    g.link(loader, 0, s, "model")
    g.link(cond, "positive", s, "positive")
    g.link(cond, "negative", s, "negative")
    g.link(cond, "latent", s, "latent")
    video_tail(g, s, (demo, 1), "demo_image_to_video", 1320, save_width=300)
    total = DEMO_FRAMES + (DEMO_SEGMENTS - 1) * (DEMO_FRAMES - DEMO_CONTEXT)
    long = g.add("AtomoVideoLongVideo", (900, 0), {
        "width": DEMO_SIZE, "height": DEMO_SIZE, "total_frames": total, "segment_frames": DEMO_FRAMES,
        "context_frames": DEMO_CONTEXT, "seed": 0, "steps": DEMO_STEPS, "cfg": 1.0, "cfg_rescale": 0.0,
        "sampler_name": "ddim", "scheduler": "trailing", "pin_context": True, "drift_strength": 1.0},
        title=f"{DEMO_SEGMENTS}-segment continuation", width=380, control="fixed")
    g.link(loader, 0, long, "model")
    g.link(demo, "positive", long, "positive")
    g.link(demo, "negative", long, "negative")
    g.link(demo, "VAE", long, "vae")
    g.link(img, 0, long, "image")
    g.link(img, 0, long, "reference")
    # the continuation's saves: Create Video below the image-to-video one, the save nodes in a column of their own
    webp = g.add("SaveAnimatedWEBP", (1920, 0), {"filename_prefix": "AtomoVideo/demo_long_video", "fps": 8.0,
                                                "lossless": False, "quality": 90, "method": "default"}, width=300)
    g.link(long, 0, webp, "images")
    cv = g.add("CreateVideo", (1320, 320), {"fps": 8.0}, width=220)
    g.link(long, 0, cv, "images")
    sv = g.add("SaveVideo", (1920, 542), {"filename_prefix": "video/AtomoVideo_demo_long_video", "format": "mp4",
                                          "codec": "h264"}, width=300)
    g.link(cv, 0, sv, "video")
    g.add("Note", (0, 810), {"text": note([
        "AtomoVideo demo: everything ships with the pack, nothing to download. AtomoVideo Demo Model gives a small "
        "unconditional base model (keep CFG 1), its VAE and empty conditioning; the rest is the ordinary nodes.",
        f"Image to video: {DEMO_FRAMES} frames of {DEMO_SIZE}x{DEMO_SIZE}. Continuation: {DEMO_SEGMENTS} "
        f"segments, {total} frames, each continuing the last {DEMO_CONTEXT} frames of the one before.",
        f"Input: copy atomo_demo/assets/{DEMO_IMAGE} from the pack into ComfyUI/input/.",
        "Headless: python -m atomo_demo run (README).",
    ])}, title="Read me: models", width=400)
    return g.workflow()


BUILDERS = {
    "demo": build_demo,
    "image_to_video": build_image_to_video,
    "text_to_video": build_text_to_video,
    "long_video": build_long_video,
    "public_weights": build_public_weights,
    "lora_controlnet": build_lora_controlnet,
}


def dumps(workflow: dict) -> str:
    return json.dumps(workflow, indent=2, ensure_ascii=False) + "\n"


def build_all(node_classes: dict) -> dict[str, str]:
    """workflow name -> file text."""
    return {name: dumps(fn(node_classes)) for name, fn in BUILDERS.items()
            if fn is not None}


def main(argv=None) -> int:
    import argparse
    import tempfile

    from comfy_host import ComfyHost, find_comfyui

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="only compare, exit 1 when a file differs")
    args = ap.parse_args(argv)
    path = find_comfyui()
    if path is None:
        print("no ComfyUI found: set COMFYUI_PATH", file=sys.stderr)
        return 2
    host = ComfyHost(path, Path(tempfile.mkdtemp(prefix="atomo_wf_")))
    texts = build_all(host.nodes.NODE_CLASS_MAPPINGS)
    differ = []
    for name, text in texts.items():
        target = WORKFLOWS / f"{name}.json"
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            differ.append(name)
            if not args.check:
                WORKFLOWS.mkdir(exist_ok=True)
                target.write_text(text, encoding="utf-8")
    print(("differ: " if args.check else "written: ") + (", ".join(differ) or "none"))
    return 1 if args.check and differ else 0


if __name__ == "__main__":
    sys.exit(main())
