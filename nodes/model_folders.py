"""Model folders of the pack, registered with ComfyUI's folder_paths.

Registration merges with entries that `extra_model_paths.yaml` may already have created (the YAML is read
before custom nodes load, and creates unknown folder names with an empty extension set).
"""
import os

import folder_paths

# folder name -> why it exists (shown in README and in "file not found" errors)
PACK_FOLDERS = {
    "atomovideo": "AtomoVideo temporal-layer files (.safetensors)",
    "animatediff_models": "AnimateDiff motion modules and PIA (shared with AnimateDiff-Evolved)",
    "ipadapter": "IP-Adapter SD1.5 image-projection files",
}


def register_model_folders() -> None:
    exts = set(folder_paths.supported_pt_extensions)
    for name in PACK_FOLDERS:
        default = os.path.join(folder_paths.models_dir, name)
        if name in folder_paths.folder_names_and_paths:
            paths, known = folder_paths.folder_names_and_paths[name]
            if default not in paths:
                paths.append(default)
            folder_paths.folder_names_and_paths[name] = (paths, set(known) | exts)
        else:
            folder_paths.folder_names_and_paths[name] = ([default], exts)
