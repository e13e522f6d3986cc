"""Node `AtomoVideoCLIPVisionInject`: the high-level image injection (IP-Adapter-style decoupled cross-attention).

Every cross-attention (attn2) site of the UNet, read from the model's SpatialTransformers (the SD1.5 middle block
included, which ComfyUI keys as `("middle", 0)`), gets an `attn2` replace patch computing

    text attention + weight * attention over the image tokens

The image tokens come from a CLIP vision model through an IP-Adapter projection (from the AtomoVideo weight file or
an IP-Adapter SD1.5 file in `models/ipadapter/`); all frames share them, the unconditional branch uses the tokens of
a blank image. The patch objects share one `ImageKeyValues` module and return themselves from `__deepcopy__`, so
`ModelPatcher.clone()` never copies the weights; `.to()` (called by the host when loading) and a per-call check
move them to the model's device and dtype.
"""
from __future__ import annotations

import torch

import comfy.ldm.modules.attention as host_attention
import comfy.patcher_extension
import folder_paths
from comfy.ldm.modules.attention import SpatialTransformer
from comfy_api.latest import io

from ..atomo_core import image_projection as ipj
from ..atomo_core.decoupled_attention import ImageKeyValues, decoupled_attention, is_active
from ..atomo_core.errors import AtomoVideoError, input_error
from ..atomo_core.image_preparation import to_rgb
from .unet_inflation import inflation_of

NODE = "AtomoVideoCLIPVisionInject"
FOLDER = "ipadapter"
FROM_ATOMOVIDEO = "from AtomoVideo weights"
CALLBACK_KEY = "atomovideo_clip_vision"


# ---------------------------------------------------------------------------------------------------------------
# Sites
# ---------------------------------------------------------------------------------------------------------------
def cross_attention_sites(unet) -> list[dict]:
    """Every attn2 of the UNet in IP-Adapter order (down, up, middle), with its ComfyUI patch key and widths."""
    groups = {"input": [], "output": [], "middle": []}

    def scan(block_name, number, block):
        for child in block.children():
            if isinstance(child, SpatialTransformer):
                for bi, tb in enumerate(child.transformer_blocks):
                    if getattr(tb, "attn2", None) is None:
                        continue
                    groups[block_name].append({
                        "key": (block_name, number, bi), "inner": tb.attn2.to_k.weight.shape[0],
                        "context": tb.attn2.to_k.weight.shape[1]})

    for i, block in enumerate(unet.input_blocks):
        scan("input", i, block)
    if getattr(unet, "middle_block", None) is not None:
        scan("middle", 0, unet.middle_block)
    for i, block in enumerate(unet.output_blocks):
        scan("output", i, block)
    return groups["input"] + groups["output"] + groups["middle"]


def site_name(key) -> str:
    return f"('{key[0]}', {key[1]})" + (f"[{key[2]}]" if key[2] else "")


# ---------------------------------------------------------------------------------------------------------------
# The patch
# ---------------------------------------------------------------------------------------------------------------
class SigmaRange:
    """The sigmas of start/end percent, computed from the model's sampling when a sampling run starts."""

    def __init__(self, start_percent: float, end_percent: float, model_sampling=None):
        self.start_percent, self.end_percent = start_percent, end_percent
        self.sigma_start, self.sigma_end = float("inf"), 0.0
        if model_sampling is not None:
            self.update(model_sampling)

    def update(self, model_sampling) -> None:
        self.sigma_start = float(model_sampling.percent_to_sigma(self.start_percent))
        self.sigma_end = float(model_sampling.percent_to_sigma(self.end_percent))

    def on_pre_run(self, patcher) -> None:
        self.update(patcher.get_model_object("model_sampling"))

    def active(self, extra_options: dict) -> bool:
        sigmas = extra_options.get("sigmas")
        if sigmas is None:
            return True
        return is_active(float(sigmas.detach().flatten()[0]), self.sigma_start, self.sigma_end)

    def __deepcopy__(self, memo):
        return self


class DecoupledAttentionPatch:
    """`patches_replace["attn2"]` entry for one site; chains to a replace patch that was there before."""

    def __init__(self, kv: ImageKeyValues, site: int, weight: float, window: SigmaRange, previous=None):
        self.kv, self.site, self.weight, self.window, self.previous = kv, site, weight, window, previous

    def __call__(self, q, k, v, extra_options):
        heads = extra_options["n_heads"]
        kwargs = {"attn_precision": extra_options.get("attn_precision"), "transformer_options": extra_options}
        if self.previous is not None:
            text = self.previous(q, k, v, extra_options)
        else:
            text = host_attention.optimized_attention(q, k, v, heads, **kwargs)
        if self.weight == 0 or not self.window.active(extra_options):
            return text
        self.kv.follow(q)
        k_ip, v_ip = self.kv.keys_values(self.site, extra_options.get("cond_or_uncond"), q.shape[0])
        return decoupled_attention(q, k, v, k_ip, v_ip, heads, self.weight, attention=host_attention.optimized_attention,
                                   text_out=text, **kwargs)

    def to(self, device_or_dtype):
        current = self.kv.cond_tokens
        if isinstance(device_or_dtype, torch.dtype):
            if device_or_dtype.is_floating_point and device_or_dtype != current.dtype:
                self.kv.to(dtype=device_or_dtype)
        elif torch.device(device_or_dtype) != current.device:
            self.kv.to(device=device_or_dtype)
        if self.previous is not None and hasattr(self.previous, "to"):
            self.previous = self.previous.to(device_or_dtype)
        return self

    def __deepcopy__(self, memo):
        return self


# ---------------------------------------------------------------------------------------------------------------
# Projection weights and CLIP encoding
# ---------------------------------------------------------------------------------------------------------------
def projection_choices() -> list[str]:
    return [FROM_ATOMOVIDEO] + folder_paths.get_filename_list(FOLDER)


def load_projection(model, projection: str) -> tuple[ipj.IPAdapterWeights, str]:
    if projection == FROM_ATOMOVIDEO:
        inflation = inflation_of(model)
        if inflation is None:
            raise input_error(NODE, "projection", "the model carries no AtomoVideo weights; load them with "
                                                  "AtomoVideoLoader first, or choose an IP-Adapter SD1.5 file from "
                                                  f"{folder_paths.get_folder_paths(FOLDER)}")
        if not inflation.image_proj:
            raise input_error(NODE, "projection", f"the AtomoVideo file '{inflation.file_name}' has no image "
                                                  "projection ('image_proj.*' tensors); choose an IP-Adapter SD1.5 "
                                                  "file instead")
        name = inflation.file_name
        try:
            weights = ipj.load_ipadapter(*ipj.split_atomovideo_image_proj(inflation.image_proj, name), name)
        except AtomoVideoError as e:
            raise input_error(NODE, "projection", str(e)) from None
        tokens = getattr(inflation.metadata, "image_tokens", 0)
        if tokens and tokens != weights.tokens:
            raise input_error(NODE, "projection", f"'{name}' declares {tokens} image tokens, but its projection "
                                                  f"makes {weights.tokens}; the file is inconsistent")
        return weights, name
    path = folder_paths.get_full_path(FOLDER, projection)
    if not path:
        raise input_error(NODE, "projection", f"'{projection}' was not found in "
                                              f"{folder_paths.get_folder_paths(FOLDER)}; put the file there and refresh")
    try:
        return ipj.load_ipadapter_file(path), projection
    except AtomoVideoError as e:
        raise input_error(NODE, "projection", str(e)) from None


def clip_features(clip_vision, image: torch.Tensor, which: str) -> torch.Tensor:
    out = clip_vision.encode_image(image, crop=True)
    return out[which].float()


def blank_image(clip_vision) -> torch.Tensor:
    """The CLIP mean colour: zero after CLIP normalisation, i.e. IP-Adapter's `zeros_like(clip_image)`."""
    size = int(getattr(clip_vision, "image_size", 224))
    mean = torch.tensor(getattr(clip_vision, "image_mean", [0.48145466, 0.4578275, 0.40821073]))
    return mean.view(1, 1, 1, 3).expand(1, size, size, 3).contiguous()


def image_tokens(clip_vision, weights: ipj.IPAdapterWeights, image: torch.Tensor, name: str
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(cond tokens [N*T, cross], uncond tokens [N*T, cross]) for N images; widths checked."""
    if not hasattr(clip_vision, "encode_image"):
        raise input_error(NODE, "clip_vision", f"expected a CLIP vision model, got {type(clip_vision).__name__}")
    features = clip_features(clip_vision, image, weights.clip_input)
    try:
        ipj.check_clip_width(weights, features.shape[-1], name)
    except AtomoVideoError as e:
        raise input_error(NODE, "clip_vision", str(e)) from None
    if weights.kind == ipj.FULL and features.shape[1] != weights.tokens:
        weights.tokens = features.shape[1]
    if weights.clip_input == ipj.IMAGE_EMBEDS:
        blank = torch.zeros_like(features[:1])  # IP-Adapter base: the projection of a zero embedding
    else:
        blank = clip_features(clip_vision, blank_image(clip_vision), weights.clip_input)
    proj = weights.projection
    with torch.no_grad():
        cond = proj(features.to(next(proj.parameters()).device))
        uncond = proj(blank.to(next(proj.parameters()).device))
    n = image.shape[0]
    cond = cond.reshape(-1, cond.shape[-1])
    uncond = uncond.reshape(-1, uncond.shape[-1]).repeat(n, 1)
    return cond, uncond


# ---------------------------------------------------------------------------------------------------------------
# The node
# ---------------------------------------------------------------------------------------------------------------
def inject(model, clip_vision, image, projection, weight=1.0, start_percent=0.0, end_percent=1.0):
    for name, value in (("start_percent", start_percent), ("end_percent", end_percent)):
        if not 0.0 <= value <= 1.0:
            raise input_error(NODE, name, f"{value} is outside 0..1")
    if start_percent > end_percent:
        raise input_error(NODE, "end_percent", f"end {end_percent} is before start {start_percent}; the injection "
                                               "would never be active")
    if not isinstance(image, torch.Tensor):
        raise input_error(NODE, "image", f"expected an IMAGE tensor, got {type(image).__name__}")
    try:
        image = to_rgb(image)
    except AtomoVideoError as e:
        raise input_error(NODE, "image", str(e)) from None
    if image.shape[0] < 1:
        raise input_error(NODE, "image", "the image batch is empty")

    weights, name = load_projection(model, projection)
    unet = model.get_model_object("diffusion_model")
    sites = cross_attention_sites(unet)
    if not sites:
        raise input_error(NODE, "model", "this model has no cross-attention layers to inject the image into")
    try:
        ipj.check_sites(weights, [(s["inner"], s["context"]) for s in sites], [site_name(s["key"]) for s in sites],
                        name)
    except AtomoVideoError as e:
        raise input_error(NODE, "projection", str(e)) from None

    cond, uncond = image_tokens(clip_vision, weights, image, name)
    kv = ImageKeyValues(weights.layers, cond, uncond)
    window = SigmaRange(start_percent, end_percent, model.get_model_object("model_sampling"))

    m = model.clone()
    replaced = m.model_options.get("transformer_options", {}).get("patches_replace", {}).get("attn2", {})
    for i, site in enumerate(sites):
        block, number, index = site["key"]
        previous = replaced.get((block, number, index), replaced.get((block, number)))
        m.set_model_attn2_replace(DecoupledAttentionPatch(kv, i, float(weight), window, previous), block, number,
                                  index)
    m.add_callback_with_key(comfy.patcher_extension.CallbacksMP.ON_PRE_RUN, CALLBACK_KEY, window.on_pre_run)
    return m


class AtomoVideoCLIPVisionInject(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=NODE,
            display_name="AtomoVideo CLIP Vision Injection",
            category="AtomoVideo",
            description="Injects the image's semantics into every cross-attention of the UNet through decoupled "
                        "cross-attention (IP-Adapter style): text attention + weight x attention over image "
                        "tokens. All frames share the tokens.",
            inputs=[
                io.Model.Input("model", tooltip="The SD1.5 video model (e.g. from AtomoVideo Loader). It is not "
                                                "changed; a patched copy is returned."),
                io.ClipVision.Input("clip_vision", tooltip="CLIP vision encoder matching the projection: ViT-H "
                                                           "(CLIP-ViT-H-14-laion2B-s32B-b79K) for IP-Adapter SD1.5 "
                                                           "base and plus."),
                io.Image.Input("image", tooltip="The input image (centre-cropped to the CLIP size). Several "
                                                "images: their tokens are concatenated."),
                io.Combo.Input("projection", options=projection_choices(),
                               tooltip="Image-projection weights: from the AtomoVideo file loaded into the model, "
                                       "or an IP-Adapter SD1.5 file (base, plus, full-face; .safetensors or .bin) "
                                       "from models/ipadapter/."),
                io.Float.Input("weight", default=1.0, min=-1.0, max=5.0, step=0.01,
                               tooltip="Strength of the image attention; 0 = no effect."),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.001,
                               tooltip="Sampling progress at which the injection starts (0 = first step)."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.001,
                               tooltip="Sampling progress at which the injection stops (1 = last step)."),
            ],
            outputs=[io.Model.Output(tooltip="The model with the image injected into its cross-attention.")],
        )

    @classmethod
    def execute(cls, model, clip_vision, image, projection, weight=1.0, start_percent=0.0,
                end_percent=1.0) -> io.NodeOutput:
        return io.NodeOutput(inject(model, clip_vision, image, projection, weight, start_percent, end_percent))
