"""Loads every shipped workflow in the real ComfyUI frontend (headless Chromium) and screenshots its graph.

A real ComfyUI server is started on 127.0.0.1 with a private base directory: this pack installed by a symlink in
`custom_nodes/`, empty placeholder files with the workflows' model names in `models/` (so the model lists contain
them), a real input image and control video. The frontend is the `comfyui-frontend-package` the server serves.
Chromium (Debian's, headless) is driven through the DevTools protocol (aiohttp websocket, already a ComfyUI
requirement). For each workflow the page runs `app.loadGraphData(workflow)` and reports:

- nodes whose type is not registered (`LiteGraph.registered_node_types`) or that carry `has_errors`;
- links that are missing, dangling, not attached to their input, or between types `LiteGraph.isValidConnection`
  refuses;
- widgets: the values the frontend serialises back differ from the file (a widget list that does not fit the
  node), or a combo value is not among the combo's options;
- console errors, uncaught exceptions and dialogs (missing nodes / models) raised while loading.

Then the graph is fitted to the window and saved as `<out>/<name>.png`, with the workflow embedded (`workflow`
text chunk, so the picture can be dragged into ComfyUI like any ComfyUI PNG) and the SHA-256 of the workflow
file (`atomovideo_workflow_sha256`), which `test_frontend_workflows.py` compares with the committed workflow so
the README pictures cannot go stale.

It also reports, for the layout checks (`tests/workflow_layout.py`), every node's rectangle as the frontend sized
it, the view it opened the workflow with and the page's bars, and the rectangles after a simulated run (the
server's "executed" messages and live previews dispatched as the websocket client dispatches them). After the
workflows it opens the template browser on the pack's category (cards, pictures, texts), queues `image_to_video`
with a missing and an unreadable weights file through POST /prompt, and runs the `demo` workflow with the
frontend's Run on the server (started with `--preview-method auto`), as the README's quick start does.
`--thumbnails` also writes the template pictures `workflows/<name>.jpg` (`template_cards.py` has their texts).

    python3 tests/frontend/render_workflows.py --comfyui /path/to/ComfyUI --out docs/workflows --thumbnails

Exit status 1 when any workflow reports an error; `--report FILE` writes the findings as JSON.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / "workflows"
PACK_DIR_NAME = "ComfyUI-AtomoVideo"
VIEW_W, VIEW_H = 1920, 1080
SHA_KEY = "atomovideo_workflow_sha256"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-extensions", "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio"]
# Combo widgets whose values name files: folder (under the base directory) for the placeholders.
FILE_WIDGETS = {"CheckpointLoaderSimple": "models/checkpoints", "CLIPVisionLoader": "models/clip_vision",
                "LoraLoader": "models/loras", "ControlNetLoader": "models/controlnet"}
PACK_FILE_WIDGETS = {"AtomoVideoLoader": ("models/atomovideo", "models/animatediff_models"),
                     "AtomoVideoCLIPVisionInject": ("models/ipadapter",)}
SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Workflow.WorkflowTabsPosition": "Sidebar", "Comfy.Graph.CanvasInfo": False, "LiteGraph.Canvas.MinFontSizeForLOD": 0, "Comfy.Minimap.Visible": False, "Comfy.Validation.Workflows": True,
            "Comfy.Workflow.ShowMissingNodesWarning": True, "Comfy.Workflow.ShowMissingModelsWarning": True}


def find_chromium() -> str | None:
    for c in (os.environ.get("CHROMIUM_PATH"), "chromium", "chromium-browser", "google-chrome"):
        if c and shutil.which(c):
            return shutil.which(c)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def workflow_files(names=None) -> list[Path]:
    files = sorted(WORKFLOWS.glob("*.json"))
    return [f for f in files if not names or f.stem in names]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -------------------------------------------------------------------------------------------------------------
# The server's base directory
# -------------------------------------------------------------------------------------------------------------
def write_test_video(path: Path, frames: int = 8, size: int = 64) -> None:
    import av
    import numpy as np

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=8)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            frame = np.zeros((size, size, 3), np.uint8)
            frame[16:48, 4 + 4 * i:36 + 4 * i] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def prepare_base(base: Path, comfyui: Path, workflows: list[Path]) -> None:
    (base / "custom_nodes").mkdir(parents=True)
    os.symlink(REPO, base / "custom_nodes" / PACK_DIR_NAME, target_is_directory=True)
    for d in ("input", "output", "temp", "user/default"):
        (base / d).mkdir(parents=True, exist_ok=True)
    (base / "user/default/comfy.settings.json").write_text(json.dumps(SETTINGS))
    write_preview_outputs(base)
    for wf_path in workflows:
        wf = json.loads(wf_path.read_text(encoding="utf-8"))
        for node in wf["nodes"]:
            values = node.get("widgets_values") or []
            t = node["type"]
            folders = (FILE_WIDGETS[t],) if t in FILE_WIDGETS else PACK_FILE_WIDGETS.get(t, ())
            for v in values:
                if t == "AtomoVideoLoader" and (REPO / "atomo_demo" / "weights" / "atomovideo" / str(v)).is_file():
                    continue  # the demo's own file, found in the pack: a placeholder would shadow it
                if isinstance(v, str) and v.endswith((".safetensors", ".ckpt", ".pth", ".bin", ".pt")):
                    for folder in folders[:1]:
                        (base / folder).mkdir(parents=True, exist_ok=True)
                        (base / folder / v).touch()
            if t == "AtomoVideoLoader" and values and values[0].endswith(".ckpt"):  # PIA / AnimateDiff files
                (base / "models/animatediff_models").mkdir(parents=True, exist_ok=True)
                (base / "models/animatediff_models" / values[0]).touch()
                (base / "models/atomovideo" / values[0]).unlink(missing_ok=True)
            if t == "LoadImage":
                src = comfyui / "input" / "example.png"
                bundled = REPO / "atomo_demo" / "assets" / values[0]  # the demo's picture ships with the pack
                if bundled.is_file():
                    shutil.copy(bundled, base / "input" / values[0])
                elif src.is_file():
                    shutil.copy(src, base / "input" / values[0])
                else:
                    from PIL import Image

                    Image.new("RGB", (512, 512), (180, 120, 60)).save(base / "input" / values[0])
            if t == "LoadVideo":
                write_test_video(base / "input" / values[0])


def write_preview_outputs(base: Path) -> None:
    """The files the "executed" messages of RUN_JS name: a 4-frame animated webp, an mp4 and a png, 512 px."""
    from PIL import Image

    frames = [Image.new("RGB", (512, 512), (40 * i, 120, 200 - 40 * i)) for i in range(4)]
    (base / "output" / "AtomoVideo").mkdir(parents=True, exist_ok=True)
    frames[0].save(base / "output" / "AtomoVideo" / "preview.webp", save_all=True, append_images=frames[1:],
                   duration=125, loop=0)
    (base / "output" / "video").mkdir(parents=True, exist_ok=True)
    write_test_video(base / "output" / "video" / "preview.mp4", size=512)
    frames[0].save(base / "output" / "AtomoVideo" / "preview.png")  # (ComfyUI empties temp/ when it starts)


def start_server(comfyui: Path, base: Path, port: int, log_path: Path) -> subprocess.Popen:
    log = open(log_path, "w")
    cmd = [sys.executable, str(comfyui / "main.py"), "--cpu", "--listen", "127.0.0.1", "--port", str(port),
           "--disable-api-nodes", "--base-directory", str(base), "--disable-auto-launch", "--preview-method", "auto"]
    # one torch thread, as `python -m atomo_demo run` uses: the demo's tensors are tiny, and the server shares the
    # CPU with Chromium
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.Popen(cmd, cwd=str(comfyui), stdout=log, stderr=subprocess.STDOUT, env=env)


async def wait_http(session: aiohttp.ClientSession, url: str, timeout: float, proc=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            async with session.get(url) as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


# -------------------------------------------------------------------------------------------------------------
# DevTools protocol
# -------------------------------------------------------------------------------------------------------------
class CDP:
    def __init__(self, ws):
        self.ws, self.next_id, self.pending, self.events = ws, 0, {}, []
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self):
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data and data["id"] in self.pending:
                self.pending.pop(data["id"]).set_result(data)
            elif "method" in data:
                self.events.append(data)

    async def send(self, method: str, params: dict | None = None, timeout: float = 60):
        self.next_id += 1
        fut = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = fut
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params or {}})
        data = await asyncio.wait_for(fut, timeout)
        if "error" in data:
            raise RuntimeError(f"{method}: {data['error']}")
        return data.get("result", {})

    async def evaluate(self, expression: str, timeout: float = 60):
        r = await self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                 "returnByValue": True}, timeout)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise RuntimeError(f"page JS failed: {d.get('exception', {}).get('description') or d.get('text')}")
        return r["result"].get("value")

    def take_errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries since the last call."""
        out = []
        for e in self.events:
            m, p = e["method"], e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console.error: " + " ".join(str(a.get("value", a.get("description", "")))
                                                        for a in p.get("args", [])))
            elif m == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append("exception: " + str(d.get("exception", {}).get("description") or d.get("text")))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                entry = p["entry"]
                out.append(f"log: {entry.get('text')} {entry.get('url', '')}".strip())
        self.events.clear()
        return out


CHECK_JS = r"""
(async (wf, name) => {
  const errors = [];
  await app.loadGraphData(structuredClone(wf), true, true, name);
  await new Promise(r => setTimeout(r, 800));
  const g = app.graph;
  const nodes = g._nodes ?? g.nodes;
  const reg = LiteGraph.registered_node_types;
  for (const n of nodes) {
    if (!(n.type in reg)) errors.push(`node ${n.id}: type ${n.type} is not registered (missing node)`);
    if (n.has_errors) errors.push(`node ${n.id} (${n.type}): has_errors`);
  }
  if (nodes.length !== wf.nodes.length) errors.push(`${nodes.length} nodes loaded, ${wf.nodes.length} in the file`);
  const links = g.links instanceof Map ? [...g.links.values()] : Object.values(g.links ?? {});
  if (links.length !== wf.links.length) errors.push(`${links.length} links loaded, ${wf.links.length} in the file`);
  for (const l of links) {
    const o = g.getNodeById(l.origin_id), t = g.getNodeById(l.target_id);
    if (!o || !t) { errors.push(`link ${l.id}: dangling`); continue; }
    const out = o.outputs?.[l.origin_slot], inp = t.inputs?.[l.target_slot];
    if (!out || !inp) { errors.push(`link ${l.id}: slot missing`); continue; }
    if (inp.link !== l.id) errors.push(`link ${l.id}: not attached to input ${inp.name} of node ${t.id}`);
    if (!LiteGraph.isValidConnection(out.type, inp.type))
      errors.push(`link ${l.id}: ${o.type}.${out.name} (${out.type}) -> ${t.type}.${inp.name} (${inp.type}) is not a valid connection`);
  }
  for (const src of wf.nodes) {
    const n = g.getNodeById(src.id);
    if (!n) continue;
    const ser = n.serialize().widgets_values ?? [];
    if (JSON.stringify(ser) !== JSON.stringify(src.widgets_values ?? []))
      errors.push(`node ${src.id} (${src.type}): widgets serialise as ${JSON.stringify(ser)}, the file has ${JSON.stringify(src.widgets_values)}`);
    for (const w of n.widgets ?? []) {
      if (w.type !== 'combo') continue;
      let values = w.options?.values;
      if (typeof values === 'function') values = values(w, n);
      if (Array.isArray(values) && !values.includes(w.value))
        errors.push(`node ${src.id} (${src.type}): combo ${w.name} value ${JSON.stringify(w.value)} is not an option`);
    }
  }
  const dialogs = [...document.querySelectorAll('.p-dialog, [role=dialog]')]
    .filter(d => d.offsetParent !== null).map(d => d.innerText.trim().slice(0, 300));
  for (const d of dialogs) errors.push(`dialog: ${d}`);
  // node rectangles as the frontend sized them, the view it opened the workflow with, and the page's own bars
  const rects = nodes.map(n => ({id: n.id, type: n.type, x: n.pos[0], y: n.pos[1], w: n.size[0], h: n.size[1]}));
  const ds = {scale: app.canvas.ds.scale, offset: [app.canvas.ds.offset[0], app.canvas.ds.offset[1]]};
  const bars = {};
  for (const sel of ['.comfyui-body-top', '.comfyui-body-left', '.comfyui-body-bottom', '.comfyui-body-right',
                     '.side-tool-bar-container', '.comfyui-menu', '.workflow-tabs-container']) {
    for (const el of document.querySelectorAll(sel)) {
      const r = el.getBoundingClientRect();
      if (r.width > 0 && r.height > 0) (bars[sel] ??= []).push([r.left, r.top, r.right, r.bottom]);
    }
  }
  const canvas = app.canvas.canvas.getBoundingClientRect();
  return {errors, nodes: nodes.length, links: links.length, rects, ds, bars,
          canvas: [canvas.left, canvas.top, canvas.right, canvas.bottom],
          title_height: LiteGraph.NODE_TITLE_HEIGHT};
})
"""

# What the frontend shows after a run, without running the models: the server's "executed" messages for the save
# and preview nodes (files written by `write_preview_outputs`) and a live latent preview on every sampling node,
# dispatched the way the websocket client dispatches them. Returns the node rectangles after the nodes resized.
PREVIEW_NODES = {"SaveAnimatedWEBP": {"images": [{"filename": "preview.webp", "subfolder": "AtomoVideo",
                                                  "type": "output"}], "animated": [True]},
                 "SaveVideo": {"images": [{"filename": "preview.mp4", "subfolder": "video", "type": "output"}],
                               "animated": [True]},
                 "PreviewImage": {"images": [{"filename": "preview.png", "subfolder": "AtomoVideo", "type": "output"}]}}
LIVE_PREVIEW_NODES = ("AtomoVideoSampler", "AtomoVideoLongVideo", "KSampler")
RUN_JS = r"""
(async (outputs, live) => {
  const api = window.comfyAPI?.api?.api ?? app.api;
  const g = app.graph;
  const nodes = g._nodes ?? g.nodes;
  const blob = await (await fetch(api.apiURL('/view?filename=preview.png&type=output&subfolder=AtomoVideo'))).blob();
  for (const n of nodes) {
    const id = String(n.id);
    if (n.type in outputs)
      api.dispatchCustomEvent('executed', {node: id, display_node: id, output: outputs[n.type], prompt_id: 'preview'});
    if (live.includes(n.type))
      api.dispatchCustomEvent('b_preview_with_metadata', {blob, nodeId: id, displayNodeId: id, parentNodeId: id,
                                                           realNodeId: id, promptId: 'preview'});
  }
  app.canvas.setDirty(true, true);
  app.canvas.draw(true, true);
  await new Promise(r => setTimeout(r, 2500));
  app.canvas.draw(true, true);
  return nodes.map(n => ({id: n.id, type: n.type, x: n.pos[0], y: n.pos[1], w: n.size[0], h: n.size[1]}));
})
"""

# The README's quick start in the UI: the demo workflow queued with the frontend's own Run (app.queuePrompt) on the
# server started with --preview-method auto; waits for the run to end and reports the live previews and node sizes.
RUN_DEMO_JS = r"""
(async (wf) => {
  const api = window.comfyAPI?.api?.api ?? app.api;
  await app.loadGraphData(structuredClone(wf), true, true, 'demo.json');
  const previews = new Set();
  let done = false, error = null, blobs = 0;
  api.addEventListener('b_preview_with_metadata', e => previews.add(String(e.detail.displayNodeId)));
  api.addEventListener('b_preview', () => { blobs += 1; });
  api.addEventListener('execution_success', () => { done = true; });
  api.addEventListener('execution_error', e => { error = e.detail.exception_message; done = true; });
  const t0 = Date.now();
  await app.queuePrompt(0);
  while (!done && Date.now() - t0 < 420000) await new Promise(r => setTimeout(r, 500));
  await new Promise(r => setTimeout(r, 2000));
  app.canvas.draw(true, true);
  const nodes = app.graph._nodes ?? app.graph.nodes;
  return {done, error, previews: [...previews], preview_blobs: blobs, seconds: (Date.now() - t0) / 1000,
          rects: nodes.map(n => ({id: n.id, type: n.type, x: n.pos[0], y: n.pos[1], w: n.size[0], h: n.size[1]}))};
})
"""

# The template browser (Workflow > Browse Templates) on the pack's category: each card's picture and texts.
TEMPLATES_JS = r"""
(async (pack, names) => {
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  await app.extensionManager.command.execute('Comfy.BrowseTemplates');
  await sleep(2500);
  const leaves = [...document.querySelectorAll('[role=dialog] *')]
    .filter(e => e.children.length === 0 && e.textContent.trim() === pack);
  if (!leaves.length) return {error: `no '${pack}' category in the template browser`, cards: []};
  (leaves[0].closest('li,button,a,[role=option],[role=button]') ?? leaves[0]).click();
  await sleep(3000);
  const cards = names.map(name => {
    const card = document.querySelector(`[data-testid="template-workflow-${name}"]`);
    if (!card) return {name, found: false};
    const img = card.querySelector('img');
    return {name, found: true, src: img?.getAttribute('src'), width: img?.naturalWidth ?? 0,
            height: img?.naturalHeight ?? 0, title: card.querySelector('h3')?.textContent?.trim(),
            description: card.querySelector('p')?.textContent?.trim()};
  });
  return {cards};
})
"""

FIT_JS = r"""
(() => {
  const g = app.graph, c = app.canvas;
  const nodes = g._nodes ?? g.nodes;
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (const n of nodes) {
    const title = LiteGraph.NODE_TITLE_HEIGHT ?? 30;
    x0 = Math.min(x0, n.pos[0]); y0 = Math.min(y0, n.pos[1] - title);
    x1 = Math.max(x1, n.pos[0] + n.size[0]); y1 = Math.max(y1, n.pos[1] + n.size[1]);
  }
  const rect = c.canvas.getBoundingClientRect();
  const left = 70, top = 60, margin = 30;       // keep clear of the side bar and the top menu
  const w = rect.width - left - margin, h = rect.height - top - margin;
  const scale = Math.min(w / (x1 - x0), h / (y1 - y0), 1.0);
  try { c.min_font_size_for_lod = 0; } catch (e) {}  // draw widgets and titles at any zoom (no LOD)
  c.ds.scale = scale;
  c.ds.offset[0] = (left + (w - (x1 - x0) * scale) / 2) / scale - x0;
  c.ds.offset[1] = (top + (h - (y1 - y0) * scale) / 2) / scale - y0;
  c.setDirty(true, true);
  c.draw(true, true);
  return scale;
})()
"""


async def run(comfyui: Path, out_dir: Path | None, names=None, keep_base: bool = False, log=print,
              extra_files: list[Path] = (), with_previews: bool = True, after_run_dir: Path | None = None,
              thumbnails: bool = False, with_templates: bool = True, queue_checks: bool = True,
              run_demo: bool = True) -> dict:
    """Checks (and screenshots) the shipped workflows, then `extra_files` (other workflow files, e.g. broken
    copies a test expects errors from; keyed by file stem in the report)."""
    chromium = find_chromium()
    if chromium is None:
        raise FileNotFoundError("chromium not found (apt-get install chromium, or set CHROMIUM_PATH)")
    files = workflow_files(names) + [Path(f) for f in extra_files]
    base = Path(tempfile.mkdtemp(prefix="atomo_frontend_"))
    prepare_base(base, comfyui, files)
    port = free_port()
    server = start_server(comfyui, base, port, base / "server.log")
    browser = None
    report = {"workflows": {}, "boot_errors": [], "templates": None, "server_log": str(base / "server.log")}
    try:
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}"
            await wait_http(http, f"{url}/object_info/AtomoVideoLoader", 180, server)
            async with http.get(f"{url}/workflow_templates") as r:
                report["templates"] = await r.json()
            profile = base / "chromium-profile"
            browser = subprocess.Popen([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                                        "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                                        f"--window-size={VIEW_W},{VIEW_H}", "about:blank"],
                                       stdout=subprocess.DEVNULL, stderr=open(base / "chromium.log", "w"))
            port_file = profile / "DevToolsActivePort"
            deadline = time.monotonic() + 60
            while not port_file.is_file() or not port_file.read_text().strip():
                if browser.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"chromium did not start (see {base / 'chromium.log'})")
                await asyncio.sleep(0.2)
            dport = int(port_file.read_text().split()[0])
            async with http.get(f"http://127.0.0.1:{dport}/json/list") as r:
                page = next(t for t in await r.json() if t["type"] == "page")
            async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                cdp = CDP(ws)
                for domain in ("Runtime", "Log", "Page"):
                    await cdp.send(f"{domain}.enable")
                await cdp.send("Emulation.setDeviceMetricsOverride", {"width": VIEW_W, "height": VIEW_H,
                                                                      "deviceScaleFactor": 1, "mobile": False})
                await cdp.send("Page.navigate", {"url": url + "/"})
                ready = ("!!(window.app && window.app.graph && window.app.canvas && window.LiteGraph && "
                         "LiteGraph.registered_node_types && LiteGraph.registered_node_types['AtomoVideoLoader'])")
                deadline = time.monotonic() + 120
                while True:
                    try:
                        if await cdp.evaluate(ready):
                            break
                    except RuntimeError:
                        pass
                    if time.monotonic() > deadline:
                        raise TimeoutError("the ComfyUI frontend did not become ready within 120 s")
                    await asyncio.sleep(0.5)
                await asyncio.sleep(2.0)
                report["boot_errors"] = cdp.take_errors()
                for f in files:
                    wf = json.loads(f.read_text(encoding="utf-8"))
                    result = await cdp.evaluate(f"{CHECK_JS}({json.dumps(wf)}, {json.dumps(f.name)})")
                    result["errors"] += cdp.take_errors()
                    await cdp.evaluate(FIT_JS)
                    await asyncio.sleep(1.0)  # previews load and may resize nodes: fit again
                    scale = await cdp.evaluate(FIT_JS)
                    await asyncio.sleep(0.5)
                    shot = await cdp.send("Page.captureScreenshot", {"format": "png"})
                    result["scale"] = scale
                    if out_dir is not None:
                        out_dir.mkdir(parents=True, exist_ok=True)
                        path = out_dir / f"{f.stem}.png"
                        save_png(base64.b64decode(shot["data"]), path, f)
                        result["screenshot"] = str(path)
                    if thumbnails and f.parent == WORKFLOWS:
                        save_thumbnail(base64.b64decode(shot["data"]), WORKFLOWS / f"{f.stem}.jpg", f)
                    if with_previews:
                        result["rects_after_run"] = await cdp.evaluate(
                            f"{RUN_JS}({json.dumps(PREVIEW_NODES)}, {json.dumps(LIVE_PREVIEW_NODES)})")
                        result["errors"] += cdp.take_errors()
                        if after_run_dir is not None:  # what the graph looks like with the previews
                            await cdp.evaluate(FIT_JS)
                            await asyncio.sleep(0.5)
                            shot = await cdp.send("Page.captureScreenshot", {"format": "png"})
                            after_run_dir.mkdir(parents=True, exist_ok=True)
                            (after_run_dir / f"{f.stem}.png").write_bytes(base64.b64decode(shot["data"]))
                    report["workflows"][f.stem] = result
                    log(f"{f.stem}: {result['nodes']} nodes, {result['links']} links, "
                        f"{len(result['errors'])} errors" + "".join(f"\n  - {e}" for e in result["errors"]))
                if with_templates:
                    stems = [f.stem for f in workflow_files(names)]
                    report["template_browser"] = await cdp.evaluate(
                        f"{TEMPLATES_JS}({json.dumps(PACK_DIR_NAME)}, {json.dumps(stems)})")
                    report["template_browser"]["errors"] = cdp.take_errors()
                    if out_dir is not None:
                        shot = await cdp.send("Page.captureScreenshot", {"format": "png"})
                        path = out_dir / "template_browser.png"
                        from PIL import Image

                        im = Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGB")
                        im.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
                            path, optimize=True)
                        report["template_browser"]["screenshot"] = str(path)
                    await cdp.send("Input.dispatchKeyEvent", {"type": "keyDown", "key": "Escape", "code": "Escape",
                                                              "windowsVirtualKeyCode": 27})
                    await cdp.send("Input.dispatchKeyEvent", {"type": "keyUp", "key": "Escape", "code": "Escape",
                                                              "windowsVirtualKeyCode": 27})
                    await asyncio.sleep(1.0)
                    report["template_browser"]["closed"] = await cdp.evaluate(
                        "![...document.querySelectorAll('[role=dialog]')].some(d => d.offsetParent !== null)")
                if queue_checks:
                    report["queue_checks"] = await queue_missing_file(cdp, http, url)
                if run_demo:
                    wf = json.loads((WORKFLOWS / "demo.json").read_text(encoding="utf-8"))
                    demo = await cdp.evaluate(f"{RUN_DEMO_JS}({json.dumps(wf)})", timeout=450)
                    demo["errors"] = cdp.take_errors()
                    demo["outputs"] = sorted(p.relative_to(base / "output").as_posix()
                                             for p in (base / "output").rglob("*demo_*") if p.is_file())
                    if out_dir is not None:
                        await cdp.evaluate(FIT_JS)
                        await asyncio.sleep(1.0)
                        shot = await cdp.send("Page.captureScreenshot", {"format": "png"})
                        from PIL import Image

                        im = Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGB")
                        path = out_dir / "demo_after_run.png"
                        im.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
                            path, optimize=True)
                        demo["screenshot"] = str(path)
                    report["demo_run"] = demo
                cdp.reader.cancel()
    finally:
        if browser is not None:
            browser.terminate()
            try:
                browser.wait(10)
            except subprocess.TimeoutExpired:
                browser.kill()
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        if not keep_base:
            shutil.copy(base / "server.log", Path(tempfile.gettempdir()) / "atomo_frontend_server.log")
            report["server_log"] = str(Path(tempfile.gettempdir()) / "atomo_frontend_server.log")
            shutil.rmtree(base, ignore_errors=True)
    return report


THUMB = 512               # template thumbnails are square: the frontend shows them in a square box
THUMB_CAPTION = 150       # height of the caption band above the graph


def save_thumbnail(data: bytes, path: Path, workflow_file: Path) -> None:
    """`workflows/<name>.jpg`, the template browser's picture: the card's title, description and badge
    (`template_cards.CARDS`) above the graph as the frontend drew it; the workflow file's SHA-256 in the JPEG
    comment, so the picture cannot go stale unnoticed."""
    from PIL import Image, ImageDraw, ImageFont

    from template_cards import CARDS, START_HERE

    title, description, badge = CARDS[workflow_file.stem]
    shot = Image.open(io.BytesIO(data)).convert("RGB").crop((64, 40, VIEW_W, VIEW_H))  # the canvas only
    shot.thumbnail((THUMB, THUMB - THUMB_CAPTION), Image.Resampling.LANCZOS)
    im = Image.new("RGB", (THUMB, THUMB), (32, 32, 32))
    im.paste(shot, ((THUMB - shot.width) // 2, THUMB_CAPTION + (THUMB - THUMB_CAPTION - shot.height) // 2))
    draw = ImageDraw.Draw(im)
    font = ImageFont.load_default  # Pillow's bundled font: the same picture on every machine
    colour = (255, 200, 60) if badge == START_HERE else (140, 200, 255)
    draw.rounded_rectangle((14, 12, 14 + draw.textlength(badge, font=font(17)) + 16, 40), 6, fill=colour)
    draw.text((22, 15), badge, font=font(17), fill=(20, 20, 20))
    draw.text((16, 48), title, font=font(30), fill=(255, 255, 255))
    words, lines = description.split(), [""]
    for w in words:
        if draw.textlength((lines[-1] + " " + w).strip(), font=font(18)) > THUMB - 32:
            lines.append("")
        lines[-1] = (lines[-1] + " " + w).strip()
    for i, line in enumerate(lines[:3]):
        draw.text((16, 86 + 21 * i), line, font=font(18), fill=(210, 210, 210))
    im.save(path, "JPEG", quality=85, optimize=True, comment=f"{SHA_KEY}={sha256(workflow_file)}".encode())


def thumbnail_sha(path: Path) -> str | None:
    from PIL import Image

    with Image.open(path) as im:
        comment = im.info.get("comment", b"").decode()
    return comment.split("=", 1)[1] if comment.startswith(SHA_KEY + "=") else None


async def queue_missing_file(cdp: CDP, http, url: str) -> dict:
    """Queues `image_to_video` as the frontend would (its own graphToPrompt) through POST /prompt: once with a
    weights file that is not there, once with the placeholder (an empty file). Both must be refused at validation."""
    wf = json.loads((WORKFLOWS / "image_to_video.json").read_text(encoding="utf-8"))
    await cdp.evaluate(f"app.loadGraphData({json.dumps(wf)}, true, true, 'image_to_video.json')")
    prompt = await cdp.evaluate("(async () => (await app.graphToPrompt()).output)()")
    loader = next(k for k, v in prompt.items() if v["class_type"] == "AtomoVideoLoader")
    out = {"loader": loader}
    for case, weights in (("missing", "missing_atomovideo.safetensors"), ("empty_file", None)):
        p = json.loads(json.dumps(prompt))
        if weights:
            p[loader]["inputs"]["weights"] = weights
        start = time.monotonic()
        async with http.post(f"{url}/prompt", json={"prompt": p, "client_id": "render_workflows"}) as r:
            out[case] = {"status": r.status, "seconds": time.monotonic() - start, "body": await r.json()}
    async with http.get(f"{url}/history") as r:
        out["history"] = await r.json()
    return out


def save_png(data: bytes, path: Path, workflow_file: Path) -> None:
    """A small palette PNG with the workflow and its file's SHA-256 embedded."""
    from PIL import Image, PngImagePlugin

    im = Image.open(io.BytesIO(data)).convert("RGB")
    im = im.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    info = PngImagePlugin.PngInfo()
    info.add_text("workflow", json.dumps(json.loads(workflow_file.read_text(encoding="utf-8")),
                                         separators=(",", ":")), zip=True)
    info.add_text(SHA_KEY, sha256(workflow_file))
    im.save(path, pnginfo=info, optimize=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--comfyui", default=os.environ.get("COMFYUI_PATH"), help="ComfyUI checkout (COMFYUI_PATH)")
    ap.add_argument("--out", default=None, help="folder for the screenshots (e.g. docs/workflows)")
    ap.add_argument("--report", default=None, help="write the findings as JSON here")
    ap.add_argument("--thumbnails", action="store_true", help="also write the template thumbnails workflows/*.jpg")
    ap.add_argument("--after-run-out", default=None, help="also save screenshots with simulated run previews here")
    ap.add_argument("--keep-base", action="store_true", help="keep the server's temporary base directory")
    ap.add_argument("names", nargs="*", help="workflow names (default: all)")
    args = ap.parse_args(argv)
    if not args.comfyui:
        print("no ComfyUI: pass --comfyui or set COMFYUI_PATH", file=sys.stderr)
        return 2
    report = asyncio.run(run(Path(args.comfyui), Path(args.out) if args.out else None, args.names,
                             args.keep_base, after_run_dir=Path(args.after_run_out) if args.after_run_out else None,
                             thumbnails=args.thumbnails))
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2))
    if report["boot_errors"]:
        print("errors while the frontend started (not counted):\n  - " + "\n  - ".join(report["boot_errors"]))
    bad = [n for n, r in report["workflows"].items() if r["errors"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
