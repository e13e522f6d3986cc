"""Host-free: every shipped workflow opens on a 1920x1080 page with every node (and the room its preview takes
after a run) on the screen and no two nodes overlapping (issue 14); measured from the workflow JSON with
`workflow_layout`. `frontend/test_frontend_workflows.py` measures the same in the real frontend."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import workflow_layout as wl

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"
NAMES = sorted(p.stem for p in WORKFLOWS.glob("*.json"))


def node(nid, ntype, pos, size):
    return {"id": nid, "type": ntype, "pos": list(pos), "size": list(size)}


@pytest.mark.parametrize("name", NAMES)
def test_workflow_fits_a_1920x1080_page_without_overlaps(name):
    wf = json.loads((WORKFLOWS / f"{name}.json").read_text(encoding="utf-8"))
    assert wl.problems(wf) == []
    # readable: the view is not shrunk below 3/4 of the graph's size
    assert wf["extra"]["ds"]["scale"] >= 0.75


def test_a_node_in_the_preview_room_of_a_save_node_is_an_overlap():
    save = node(1, "SaveAnimatedWEBP", (0, 0), (360, 182))
    # 30 px title above pos: a node whose title starts 200 px below the save node's bottom is inside the room
    below = node(2, "VAEDecode", (100, 182 + 230), (220, 84))
    assert wl.overlaps(wl.rectangles([save, below])) == ["node 1 (SaveAnimatedWEBP) and node 2 (VAEDecode) overlap"]
    assert wl.overlaps(wl.rectangles([save, below], with_previews=False)) == []
    # the same node under a node without a preview is clear of it
    assert wl.overlaps(wl.rectangles([node(1, "VAEDecode", (0, 0), (360, 182)), below])) == []
    # right of the room: clear
    assert wl.overlaps(wl.rectangles([save, node(2, "VAEDecode", (361, 100), (220, 84))])) == []


def test_title_bars_count():
    a = node(1, "VAEDecode", (0, 0), (220, 84))
    assert wl.overlaps(wl.rectangles([a, node(2, "CreateVideo", (0, 100), (220, 108))])) == [
        "node 1 (VAEDecode) and node 2 (CreateVideo) overlap"]  # its title bar starts at 70 < 84
    assert wl.overlaps(wl.rectangles([a, node(2, "CreateVideo", (0, 114), (220, 108))])) == []


def test_off_screen_nodes_are_named_with_where_they_lie():
    rects = wl.rectangles([node(1, "VAEDecode", (0, 0), (220, 84)), node(2, "SaveVideo", (2000, 0), (360, 134))])
    assert wl.outside(rects, {"scale": 1.0, "offset": [10, 40]}) == [
        "node 2 (SaveVideo) lies at (2010, 10)-(2370, 534) on a 1856x1040 canvas"]
    ds = wl.view_for(rects)  # 2360 x 524 graph units: 0.75 is the largest step of 0.05 that fits 1836 px
    assert ds["scale"] == 0.75 and wl.outside(rects, ds) == []
    x0, y0, x1, y1 = wl.bounds(rects)
    s, (ox, oy) = ds["scale"], ds["offset"]
    assert abs((x0 + ox) * s - (wl.CANVAS_W - (x1 + ox) * s)) < 1  # centred
    assert abs((y0 + oy) * s - (wl.CANVAS_H - (y1 + oy) * s)) < 1
