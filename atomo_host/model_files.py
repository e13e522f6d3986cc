"""The pack's model folders and the one way its nodes find a file in them.

Registration merges with entries that `extra_model_paths.yaml` may already have created (the YAML is read
before custom nodes load, and creates unknown folder names with an empty extension set). The pack's own demo
AtomoVideo file is found through the same folder: `<pack>/atomo_demo/weights/atomovideo` is its last path, so
AtomoVideo Loader lists `demo_atomovideo.safetensors` with nothing copied, and a user's file of the same name wins.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import folder_paths

from ..atomo_core.errors import AtomoVideoError

# folder name -> why it exists (shown in README and in "file not found" errors)
PACK_FOLDERS = {
    "atomovideo": "AtomoVideo temporal-layer files (.safetensors)",
    "animatediff_models": "AnimateDiff motion modules and PIA (shared with AnimateDiff-Evolved)",
    "ipadapter": "IP-Adapter SD1.5 image-projection files",
}
# folder name -> folders inside the pack that ship files of that kind (after the user's folders)
BUNDLED_FOLDERS = {
    "atomovideo": [Path(__file__).resolve().parent.parent / "atomo_demo" / "weights" / "atomovideo"],
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
        paths = folder_paths.folder_names_and_paths[name][0]
        paths += [str(p) for p in BUNDLED_FOLDERS.get(name, []) if str(p) not in paths]


def create_model_folders(models_dir: str | None = None) -> list[str]:
    """Creates the pack's folders under `models_dir` (ComfyUI's `models/`) that do not exist yet, so a new user
    sees where files go; nothing that exists is touched. Returns the folders made. A read-only install only logs
    a warning: the pack still loads."""
    models_dir = models_dir or folder_paths.models_dir
    made = []
    for name in PACK_FOLDERS:
        path = os.path.join(models_dir, name)
        if os.path.isdir(path):
            continue
        try:
            os.makedirs(path)
        except OSError as e:
            logging.warning("ComfyUI-AtomoVideo: could not create the model folder %s (%s); create it yourself.",
                            path, e)
            continue
        made.append(path)
    if made:
        logging.info("ComfyUI-AtomoVideo: created the model folders %s", ", ".join(made))
    return made


def file_names(folders: tuple[str, ...]) -> list[str]:
    """The files of `folders`, each name once, in folder order (the choices of a combo input)."""
    names: list[str] = []
    for folder in folders:
        names += [n for n in folder_paths.get_filename_list(folder) if n not in names]
    return names


def folder_paths_of(folders: tuple[str, ...]) -> list[str]:
    return [p for f in folders for p in folder_paths.get_folder_paths(f)]


def file_path(folders: tuple[str, ...], name: str, field: str) -> str:
    """The full path of `name` in the first of `folders` that has it; refused, as input `field`, otherwise."""
    for folder in folders:
        path = folder_paths.get_full_path(folder, name)
        if path:
            return path
    raise AtomoVideoError(field, f"'{name}' was not found in {folder_paths_of(folders)}. Put the file there "
                                 "(or in a folder named in extra_model_paths.yaml) and refresh.")
