"""`python -m atomo_demo run`: the shipped `demo` workflow, executed headless through the real ComfyUI.

The UI workflow is converted to an API prompt by the same converter the workflow tests use (`ui_workflow`) and run
by ComfyUI's executor (`headless`), in private input/output folders: the demo picture is copied into the input
folder for LoadImage, and the files the save nodes write are moved into the demo's output folder under fixed names,
with the picture (`input.png`) and a contact sheet of every frame (`contact_sheet.png`).
"""
from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import folder_paths
import nodes
import numpy as np

from ..atomo_core.errors import AtomoVideoError
from ..atomo_core.metrics import plots
from . import demo_model, headless, ui_workflow

PACK_DIR = Path(__file__).resolve().parent.parent
WORKFLOW = PACK_DIR / "workflows" / "demo.json"
INPUT_IMAGE = PACK_DIR / "atomo_demo" / "assets" / "demo_input.png"
# Core node files beyond nodes.py that the workflow uses (ComfyUI loads them all at server start; a headless boot
# loads only these): node type -> its file in comfy_extras/.
EXTRAS = {"SaveAnimatedWEBP": "nodes_images.py", "SaveVideo": "nodes_video.py", "CreateVideo": "nodes_video.py"}
# the workflow's save-node filename prefixes end in these -> the file names in the output folder
OUTPUT_NAMES = {"demo_image_to_video": "image_to_video", "demo_long_video": "long_video"}
SAVE_NODES = ("SaveAnimatedWEBP", "SaveVideo")
SHEET_COLUMNS, SHEET_GAP = 16, 6


def load_extras() -> None:
    for node_type, file in EXTRAS.items():
        if node_type not in nodes.NODE_CLASS_MAPPINGS:
            path = Path(nodes.__file__).resolve().parent / "comfy_extras" / file
            if not asyncio.run(nodes.load_custom_node(str(path), module_parent="comfy_extras")):
                raise headless.PromptError(f"ComfyUI could not load {path} (needed for {node_type})")


@contextmanager
def private_folders(root: Path):
    """ComfyUI's input, output and temp folders under `root` for the run, the host's afterwards."""
    before = (folder_paths.get_input_directory(), folder_paths.get_output_directory(),
              folder_paths.get_temp_directory())
    for name in ("input", "output", "temp"):
        (root / name).mkdir(parents=True, exist_ok=True)
    folder_paths.set_input_directory(str(root / "input"))
    folder_paths.set_output_directory(str(root / "output"))
    folder_paths.set_temp_directory(str(root / "temp"))
    try:
        yield root
    finally:
        folder_paths.set_input_directory(before[0])
        folder_paths.set_output_directory(before[1])
        folder_paths.set_temp_directory(before[2])


def output_name(prefix: str) -> str:
    for ending, name in OUTPUT_NAMES.items():
        if prefix.endswith(ending):
            return name
    return Path(prefix).name


def collect(prompt: dict, outputs: dict, out_dir: Path) -> dict[str, Path]:
    """Move what the save nodes wrote into `out_dir` as `<name><suffix>`; file name -> path."""
    files = {}
    for nid, node in prompt.items():
        if node["class_type"] not in SAVE_NODES:
            continue
        name = output_name(node["inputs"]["filename_prefix"])
        for item in outputs.get(nid, {}).get("images", []):
            src = Path(folder_paths.get_output_directory()) / item.get("subfolder", "") / item["filename"]
            dst = out_dir / f"{name}{src.suffix}"
            shutil.move(str(src), str(dst))
            files[dst.name] = dst
    return files


def contact_sheet(videos: list[Path], path: Path) -> Path:
    """Every frame of `videos` (animated webp), SHEET_COLUMNS a row, one block of rows per video."""
    from PIL import Image, ImageSequence

    arrays = []
    for video in videos:
        with Image.open(video) as im:
            arrays.append(np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)]))
    Image.fromarray(plots.contact_sheet(arrays, columns=SHEET_COLUMNS, gap=SHEET_GAP)).save(path)
    return path


def run_demo(out_dir: Path, progress_file=None) -> dict[str, Path]:
    """Execute the demo workflow; file name -> path of everything written to `out_dir`."""
    demo_model.check_bundled_files()
    load_extras()
    prompt = ui_workflow.convert_file(WORKFLOW, nodes.NODE_CLASS_MAPPINGS)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="atomo_demo_") as tmp, private_folders(Path(tmp)):
        for node in prompt.values():
            if node["class_type"] == "LoadImage":
                shutil.copy(INPUT_IMAGE, Path(tmp) / "input" / node["inputs"]["image"])
        files = collect(prompt, headless.execute(prompt, progress_file), out_dir)
    shutil.copy(INPUT_IMAGE, out_dir / "input.png")
    files["input.png"] = out_dir / "input.png"
    webps = [files[f"{n}.webp"] for n in OUTPUT_NAMES.values() if f"{n}.webp" in files]
    files["contact_sheet.png"] = contact_sheet(webps, out_dir / "contact_sheet.png")
    return files


def main(out_dir: Path, started: float) -> int:
    """The command's body after ComfyUI booted; `started`: `time.perf_counter()` when the process began."""
    booted = time.perf_counter()
    try:
        files = run_demo(out_dir)
    except (AtomoVideoError, headless.PromptError, ui_workflow.WorkflowError) as e:
        print(f"atomo_demo: {e}", file=sys.stderr)
        return 1
    done = time.perf_counter()
    for name in sorted(files):
        print(f"  {files[name]}")
    print(f"AtomoVideo demo: {len(files)} files in {out_dir} | ComfyUI boot {booted - started:.1f} s, workflow "
          f"{done - booted:.1f} s, total {done - started:.1f} s", flush=True)
    return 0
