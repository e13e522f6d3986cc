"""The ComfyUI face of the pack: V3 schema nodes and the glue that patches models through host APIs.

Every module here may import ComfyUI; `atomo_core` never does.
"""
from .clip_vision_node import AtomoVideoCLIPVisionInject
from .continuation_node import AtomoVideoContinue, AtomoVideoJoinSegments, AtomoVideoLongVideo
from .demo_model_node import AtomoVideoDemoModel
from .image_conditioning_node import AtomoVideoImageConditioning
from .loader_node import AtomoVideoLoader
from .metrics_node import AtomoVideoMetrics
from .sampler_node import AtomoVideoModelSampling, AtomoVideoSampler

NODE_LIST = [
    AtomoVideoLoader,
    AtomoVideoImageConditioning,
    AtomoVideoCLIPVisionInject,
    AtomoVideoMetrics,
    AtomoVideoSampler,
    AtomoVideoModelSampling,
    AtomoVideoContinue,
    AtomoVideoJoinSegments,
    AtomoVideoLongVideo,
    AtomoVideoDemoModel,
]
