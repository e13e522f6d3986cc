"""How a workflow's nodes lie on the screen, measured from the workflow JSON (issue 14).

The frontend (ComfyUI_frontend 1.27.10) keeps the `pos` and `size` a workflow stores (checked in headless Chromium
by `frontend/test_frontend_workflows.py`, which also measures the sizes after a simulated run) and opens it with
the view the file stores (`extra.ds`: scale and offset). On a 1920x1080 page its canvas is the page minus the top
menu (40 px) and the left side bar (64 px), i.e. 1856x1040 (measured in that test). A node's rectangle is its
`size` at `pos` plus the title bar above `pos`.

After a run, save and preview nodes show the result below their widgets and sampling nodes show the live
preview: the frontend grows them by about their width for a square video (a 360 px wide Save Animated WEBP grew
from 182 to 506 px, Save Video from 134 to 458 px, in the frontend test). That room is part of the node here, so
a layout without overlaps stays without overlaps after a run.
"""
from __future__ import annotations

TITLE_HEIGHT = 30
CANVAS_W, CANVAS_H = 1920 - 64, 1080 - 40  # a 1920x1080 page minus the side bar and the top menu
MARGIN = 10
PREVIEW_NODES = {"SaveAnimatedWEBP", "SaveVideo", "PreviewImage", "AtomoVideoSampler", "AtomoVideoLongVideo",
                 "KSampler"}


def rectangles(nodes: list[dict], with_previews: bool = True) -> dict[int, tuple[str, float, float, float, float]]:
    """node id -> (type, x0, y0, x1, y1) in graph units, title bar included, preview room below preview nodes."""
    out = {}
    for n in nodes:
        (x, y), (w, h) = n["pos"], n["size"]
        room = w if with_previews and n["type"] in PREVIEW_NODES else 0
        out[n["id"]] = (n["type"], x, y - TITLE_HEIGHT, x + w, y + h + room)
    return out


def overlaps(rects: dict) -> list[str]:
    found = []
    ids = sorted(rects)
    for i, a in enumerate(ids):
        ta, ax0, ay0, ax1, ay1 = rects[a]
        for b in ids[i + 1:]:
            tb, bx0, by0, bx1, by1 = rects[b]
            if ax0 < bx1 and bx0 < ax1 and ay0 < by1 and by0 < ay1:
                found.append(f"node {a} ({ta}) and node {b} ({tb}) overlap")
    return found


def bounds(rects: dict) -> tuple[float, float, float, float]:
    return (min(r[1] for r in rects.values()), min(r[2] for r in rects.values()),
            max(r[3] for r in rects.values()), max(r[4] for r in rects.values()))


def view_for(rects: dict) -> dict:
    """`extra.ds` that shows all of `rects` on the canvas: scale 1 when it fits, else the largest multiple of 0.05
    that does; centred."""
    x0, y0, x1, y1 = bounds(rects)
    fit = min((CANVAS_W - 2 * MARGIN) / (x1 - x0), (CANVAS_H - 2 * MARGIN) / (y1 - y0), 1.0)
    scale = int(fit * 20 + 1e-9) / 20
    offset = [round((CANVAS_W / scale - (x1 - x0)) / 2 - x0), round((CANVAS_H / scale - (y1 - y0)) / 2 - y0)]
    return {"scale": scale, "offset": offset}


def outside(rects: dict, ds: dict) -> list[str]:
    """Nodes (with their preview room) that the view `ds` does not show whole on a 1920x1080 page."""
    s, (ox, oy) = ds["scale"], ds["offset"]
    found = []
    for nid, (t, x0, y0, x1, y1) in sorted(rects.items()):
        sx0, sy0, sx1, sy1 = (x0 + ox) * s, (y0 + oy) * s, (x1 + ox) * s, (y1 + oy) * s
        if sx0 < 0 or sy0 < 0 or sx1 > CANVAS_W or sy1 > CANVAS_H:
            found.append(f"node {nid} ({t}) lies at ({sx0:.0f}, {sy0:.0f})-({sx1:.0f}, {sy1:.0f}) on a "
                         f"{CANVAS_W}x{CANVAS_H} canvas")
    return found


def problems(workflow: dict) -> list[str]:
    rects = rectangles(workflow["nodes"])
    return overlaps(rects) + outside(rects, workflow["extra"]["ds"])
