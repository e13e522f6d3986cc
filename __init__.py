"""ComfyUI-AtomoVideo: AtomoVideo image-to-video (arXiv 2403.01800) as ComfyUI nodes.

Loaded by ComfyUI as a custom node pack (V3 schema): ComfyUI calls `comfy_entrypoint`.
"""
from comfy_api.latest import ComfyExtension, io

from .nodes import NODE_LIST
from .atomo_host.model_files import create_model_folders, register_model_folders


class AtomoVideoExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODE_LIST)


async def comfy_entrypoint() -> AtomoVideoExtension:
    # on_load() is never called by ComfyUI 0.3.64, so folder registration happens here.
    register_model_folders()
    create_model_folders()
    return AtomoVideoExtension()
