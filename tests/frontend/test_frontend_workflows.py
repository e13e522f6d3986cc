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
from template_cards import CARDS  # noqa: E402

sys.path.insert(0, str(HERE.parent))
import workflow_layout as wl  # noqa: E402

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


@pytest.mark.parametrize("name", NAMES)
def test_template_thumbnails_are_current(name):
    """workflows/<name>.jpg, the template browser's picture, was drawn from this version of the workflow and
    carries the card text of template_cards.CARDS."""
    from PIL import Image

    thumb = REPO / "workflows" / f"{name}.jpg"
    assert thumb.is_file(), (f"{thumb} is missing: run `python3 tests/frontend/render_workflows.py --comfyui "
                             "$COMFYUI_PATH --out docs/workflows --thumbnails`")
    with Image.open(thumb) as im:
        assert im.format == "JPEG" and im.size == (rw.THUMB, rw.THUMB)
    assert rw.thumbnail_sha(thumb) == rw.sha256(REPO / "workflows" / f"{name}.json"), (
        f"{thumb} was drawn from another version of {name}.json: render the thumbnails again")
    assert thumb.stat().st_size < 120_000


def test_every_workflow_has_a_card():
    assert list(CARDS)[0] == "demo" and sorted(CARDS) == NAMES


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
    report = asyncio.run(rw.run(comfyui, tmp_path / "shots", log=lambda *_: None, extra_files=list(broken),
                                thumbnails=False))
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
        # layout as the frontend sees it: the file's positions and sizes (CLIPTextEncode: the frontend's minimum
        # height, 2 px more), the file's view, no overlaps and every node on the 1920x1080 page before a run and
        # after it (previews of every save, preview and sampling node shown)
        assert result["canvas"] == [64, 40, 1920, 1080] and result["title_height"] == wl.TITLE_HEIGHT
        assert result["ds"] == wf["extra"]["ds"]
        by_id = {n["id"]: n for n in wf["nodes"]}
        for r in result["rects"]:
            n = by_id[r["id"]]
            assert [r["x"], r["y"]] == n["pos"] and r["w"] == n["size"][0], (name, r)
            assert 0 <= r["h"] - n["size"][1] <= 2, (name, r)
        for key in ("rects", "rects_after_run"):
            nodes = [{"id": r["id"], "type": r["type"], "pos": [r["x"], r["y"]], "size": [r["w"], r["h"]]}
                     for r in result[key]]
            rects = wl.rectangles(nodes, with_previews=key == "rects")
            assert wl.overlaps(rects) + wl.outside(rects, result["ds"]) == [], (name, key)
        grown = [r for r, b in zip(result["rects_after_run"], result["rects"]) if r["h"] > b["h"] + 100]
        assert {r["type"] for r in grown} >= {"SaveAnimatedWEBP", "SaveVideo"}, (name, grown)
        for r, b in zip(result["rects_after_run"], result["rects"]):  # the room left for the previews suffices
            if r["type"] in wl.PREVIEW_NODES:
                assert r["h"] - b["h"] <= b["w"], (name, r, b)
    # errors while the frontend starts are the frontend's own (offline 404s); none may come from this pack
    assert not [e for e in report["boot_errors"] if "atomo" in e.lower()], report["boot_errors"]
    # the server lists the pack's workflows/ folder as templates
    assert sorted(report["templates"].get(rw.PACK_DIR_NAME, [])) == NAMES, report["templates"]
    # the template browser shows every card with its picture (512x512, loaded), its title and its description
    browser = report["template_browser"]
    assert "error" not in browser and not browser["errors"], browser
    for card in browser["cards"]:
        assert card["found"] and (card["width"], card["height"]) == (rw.THUMB, rw.THUMB), card
        assert card["title"] == card["name"] and card["description"] == card["name"].replace("_", " "), card
    # queueing with a missing or an unreadable weight file: POST /prompt answers 400 at validation, fast, naming
    # the loader's input, the folders searched and the workflows that run without an AtomoVideo file; nothing ran
    checks = report["queue_checks"]
    for case, expected in (("missing", "'missing_atomovideo.safetensors' was not found. Searched: "),
                           ("empty_file", "'atomovideo_sd15.safetensors' (")):
        answer = checks[case]
        assert answer["status"] == 400 and answer["seconds"] < 1.0, answer
        errors = answer["body"]["node_errors"][checks["loader"]]["errors"]
        assert [e["type"] for e in errors] == ["custom_validation_failed"], errors
        assert errors[0]["details"].startswith("weights - AtomoVideoLoader, input 'weights': " + expected), errors
    assert "'demo' runs the pack's own small model" in checks["missing"]["body"]["node_errors"][checks["loader"]][
        "errors"][0]["details"]
    assert "is not a readable safetensors file" in checks["empty_file"]["body"]["node_errors"][checks["loader"]][
        "errors"][0]["details"]
    assert checks["history"] == {}
    # the README's quick start in the UI: the demo workflow run with the frontend's Run on a server started with
    # --preview-method auto writes both videos twice (webp, mp4), shows live previews in both sampling nodes, and
    # after the run (real previews, real videos in the save nodes) still no node overlaps or leaves the screen
    demo = report["demo_run"]
    assert demo["done"] and demo["error"] is None and not demo["errors"], demo
    assert len(demo["outputs"]) == 4 and {p.rsplit("_", 2)[0] for p in demo["outputs"]} == {
        "AtomoVideo/demo_image_to_video", "AtomoVideo/demo_long_video", "video/AtomoVideo_demo_image_to_video",
        "video/AtomoVideo_demo_long_video"}, demo["outputs"]
    wf = json.loads((REPO / "workflows" / "demo.json").read_text(encoding="utf-8"))
    sampling = {str(n["id"]) for n in wf["nodes"] if n["type"] in ("AtomoVideoSampler", "AtomoVideoLongVideo")}
    assert demo["preview_blobs"] > 0 and sampling <= set(demo["previews"]), demo["previews"]
    rects = wl.rectangles([{"id": r["id"], "type": r["type"], "pos": [r["x"], r["y"]], "size": [r["w"], r["h"]]}
                           for r in demo["rects"]], with_previews=False)
    assert wl.overlaps(rects) + wl.outside(rects, wf["extra"]["ds"]) == []
