"""The demo's AtomoVideo file, until the trained one is committed: identity layers for the demo UNet's layout.

The demo workflow and command need `atomo_demo/weights/atomovideo/demo_atomovideo.safetensors`. The trained file is
made by `atomo_train` (issue 13); while it is not in the checkout, `ensure_demo_atomovideo` writes an untrained one
there (fresh temporal layers, zero extra conv_in channels, v-prediction + zero terminal SNR metadata), so the
workflow and the command run with the pack's files and nothing else. It never replaces an existing file.

    COMFYUI_PATH=/path/to/ComfyUI python3 tests/demo_files.py    # write it by hand
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.append(str(HERE))

from pack import core, module  # noqa: E402

PLACEHOLDER_NOTE = "untrained identity layers written by tests/demo_files.py; replace with the trained file"


def ensure_demo_atomovideo() -> tuple[Path, bool]:
    """(path of the demo AtomoVideo file, whether it was written now). Needs the booted host."""
    demo = module("atomo_host.demo_model")
    path = demo.ATOMOVIDEO_DIR / demo.ATOMOVIDEO_FILE
    if path.is_file():
        return path, False
    atomovideo_sites = core("unet_sites", "atomovideo_sites")
    fresh_weights, save_atomovideo = core("weight_format", "fresh_weights", "save_atomovideo")
    model = demo.load_demo()[0]
    layout = module("atomo_host.inflation").host_layout(model.get_model_object("diffusion_model"))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_atomovideo(tmp, fresh_weights(atomovideo_sites(layout)), {"note": PLACEHOLDER_NOTE})
    tmp.replace(path)
    return path, True


def main() -> int:
    from comfy_host import ComfyHost, find_comfyui

    path = find_comfyui()
    if path is None:
        print("no ComfyUI found: set COMFYUI_PATH", file=sys.stderr)
        return 2
    ComfyHost(path, Path(tempfile.mkdtemp(prefix="atomo_demo_files_")))
    written, new = ensure_demo_atomovideo()
    print(("written: " if new else "exists: ") + str(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
