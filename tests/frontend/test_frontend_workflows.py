"""The shipped workflows in the real ComfyUI frontend (headless Chromium), and the README's pictures of them.

`test_workflows_load_in_the_real_frontend` starts a real ComfyUI server (127.0.0.1 only) with this pack installed
and loads every workflow in the frontend package it serves, through `render_workflows.py`; it skips, saying why,
without Chromium, a ComfyUI checkout or the frontend package. `test_readme_pictures_are_current` needs none of
them: every committed picture in docs/workflows/ carries the SHA-256 of the workflow file it was taken from.
"""
from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

import render_workflows as rw  # noqa: E402

DOCS = REPO / "docs" / "workflows"
NAMES = sorted(p.stem for p in rw.workflow_files())


def _comfyui() -> Path | None:
    sys.path.append(str(HERE.parent))
    from comfy_host import find_comfyui

    return find_comfyui()


@pytest.mark.parametrize("name", NAMES)
def test_readme_pictures_are_current(name):
    from PIL import Image

    picture = DOCS / f"{name}.png"
    assert picture.is_file(), (f"{picture} is missing: run `python3 tests/frontend/render_workflows.py "
                               f"--comfyui $COMFYUI_PATH --out docs/workflows`")
    workflow = REPO / "workflows" / f"{name}.json"
    with Image.open(picture) as im:
        text = im.text
        assert im.size == (rw.VIEW_W, rw.VIEW_H)
    assert text.get(rw.SHA_KEY) == rw.sha256(workflow), (f"{picture} was taken from another version of "
                                                         f"{workflow.name}: render the pictures again")
    assert json.loads(text["workflow"]) == json.loads(workflow.read_text(encoding="utf-8"))
    assert picture.stat().st_size < 400_000


def _broken_copies(folder: Path) -> dict[Path, str]:
    """Copies of image_to_video with one defect each -> the text the frontend check must report."""
    folder.mkdir()
    base = json.loads((REPO / "workflows" / "image_to_video.json").read_text(encoding="utf-8"))

    def node(wf, t):
        return next(n for n in wf["nodes"] if n["type"] == t)

    out = {}
    for stem, edit, expected in [
        ("zz_broken_widget_count", lambda wf: node(wf, "AtomoVideoSampler")["widgets_values"].insert(2, 0.5),
         "(AtomoVideoSampler): widgets serialise as"),
        ("zz_broken_combo_value", lambda wf: node(wf, "AtomoVideoSampler")["widgets_values"].__setitem__(6, "nope"),
         'combo scheduler value "nope" is not an option'),
        ("zz_broken_missing_node", lambda wf: node(wf, "AtomoVideoLoader").__setitem__("type", "AtomoVideoLoaderOld"),
         "type AtomoVideoLoaderOld is not registered"),
    ]:
        wf = json.loads(json.dumps(base))
        edit(wf)
        path = folder / f"{stem}.json"
        path.write_text(json.dumps(wf))
        out[path] = expected
    return out


def test_workflows_load_in_the_real_frontend(tmp_path):
    chromium = rw.find_chromium()
    if chromium is None:
        pytest.skip("chromium not found (Debian: apt-get install chromium; or set CHROMIUM_PATH)")
    comfyui = _comfyui()
    if comfyui is None:
        pytest.skip("no ComfyUI found: set COMFYUI_PATH to run the frontend test")
    if importlib.util.find_spec("comfyui_frontend_package") is None:
        pytest.skip("comfyui-frontend-package is not installed (pip install -r ComfyUI/requirements.txt)")
    broken = _broken_copies(tmp_path / "broken")
    report = asyncio.run(rw.run(comfyui, tmp_path / "shots", log=lambda *_: None, extra_files=list(broken)))
    assert set(report["workflows"]) == set(NAMES) | {p.stem for p in broken}
    # the script does see errors: each broken copy reports what was broken
    for path, expected in broken.items():
        errors = "\n".join(report["workflows"][path.stem]["errors"])
        assert expected in errors, f"{path.stem}: expected '{expected}' in:\n{errors}"
    for name in NAMES:
        result = report["workflows"][name]
        assert not result["errors"], f"{name}: " + "\n".join(result["errors"])
        wf = json.loads((REPO / "workflows" / f"{name}.json").read_text(encoding="utf-8"))
        assert result["nodes"] == len(wf["nodes"]) and result["links"] == len(wf["links"])
        assert Path(result["screenshot"]).stat().st_size > 10_000
    # errors while the frontend starts are the frontend's own (offline 404s); none may come from this pack
    assert not [e for e in report["boot_errors"] if "atomo" in e.lower()], report["boot_errors"]
    # the server lists the pack's workflows/ folder as templates
    assert sorted(report["templates"].get(rw.PACK_DIR_NAME, [])) == NAMES, report["templates"]
