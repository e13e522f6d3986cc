"""UI-format ComfyUI workflow -> API-format prompt (ComfyUI has no converter in Python).

One converter for the workflow tests and for `python -m atomo_demo run`, which executes `workflows/demo.json`
headless. Host-free: the node classes come in as an argument (the host's `NODE_CLASS_MAPPINGS`), so tests import
it before ComfyUI boots.

The UI format is what the frontend saves and users drag in: `nodes` (with `inputs` that carry link ids, `outputs`
and `widgets_values`, a list in the order of the node's widget inputs) and `links`
(`[id, from_node, from_slot, to_node, to_slot, type]`). The API format is what `/prompt` and `PromptExecutor`
accept: `{"<id>": {"class_type": ..., "inputs": {name: value | [from_id, from_slot]}}}`.

Widget values are mapped to input names through the node schemas registered in the real host
(`NODE_CLASS_MAPPINGS[type].INPUT_TYPES()`, V1 and V3 nodes alike), skipping the values the frontend adds on its
own: `control_after_generate` after a seed-like INT and the upload widget after LoadImage/LoadVideo-style combos.
Everything that does not fit fails loudly with the workflow, node id, node type and input named: unknown node
types, a widget count that differs from the schema, links whose type is not the output's or the input's type,
inputs the schema does not have. That is what makes a workflow fail its tests as soon as a node's inputs change.
"""
from __future__ import annotations

import json
from pathlib import Path

# Node types that only exist in the frontend; they carry no computation and are dropped.
FRONTEND_ONLY = {"Note", "MarkdownNote"}
# Widget types (everything else is a socket that takes a link).
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
# Options that make the frontend add a widget whose value is saved after the input's own value.
UPLOAD_OPTIONS = ("image_upload", "video_upload", "audio_upload", "animated_image_upload")
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
MODE_MUTED, MODE_BYPASSED = 2, 4


class WorkflowError(ValueError):
    """A workflow does not fit the node schemas of the host; the message names workflow, node and input."""


def type_name(t) -> str:
    if isinstance(t, (list, tuple)):
        return "COMBO"
    return str(getattr(t, "value", t))


def is_widget(spec) -> bool:
    t = type_name(spec[0])
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return t in WIDGET_TYPES and not opts.get("forceInput", False)


def extra_frontend_values(name: str, spec) -> int:
    """How many frontend-only values the frontend saves after this widget's own value."""
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    n = 0
    if type_name(spec[0]) in ("INT", "FLOAT") and opts.get("control_after_generate",
                                                           name in ("seed", "noise_seed")):
        n += 1
    if any(opts.get(k) for k in UPLOAD_OPTIONS):
        n += 1
    return n


def input_specs(cls) -> dict:
    """name -> (spec, required?) in schema order, required then optional (the frontend's widget order)."""
    types = cls.INPUT_TYPES()
    out = {}
    for section in ("required", "optional"):
        for name, spec in (types.get(section) or {}).items():
            out[name] = (tuple(spec) if isinstance(spec, (list, tuple)) else (spec,), section == "required")
    return out


def output_types(cls) -> list[str]:
    return [type_name(t) for t in getattr(cls, "RETURN_TYPES", ())]


def types_match(a: str, b: str) -> bool:
    if a == "*" or b == "*":
        return True
    return bool(set(a.split(",")) & set(b.split(",")))


def widget_names(cls) -> list[tuple[str, tuple]]:
    return [(n, s) for n, (s, _) in input_specs(cls).items() if is_widget(s)]


def convert(workflow: dict, node_classes: dict, name: str = "workflow") -> dict:
    """The API prompt of a UI workflow, checked against `node_classes` (the host's NODE_CLASS_MAPPINGS)."""
    if "nodes" not in workflow or "links" not in workflow:
        raise WorkflowError(f"{name}: not a UI-format workflow (no 'nodes'/'links'); API prompts need no conversion")
    if workflow.get("definitions", {}).get("subgraphs"):
        raise WorkflowError(f"{name}: subgraphs are not supported by this converter")
    nodes = {n["id"]: n for n in workflow["nodes"]}
    links = {}
    for link in workflow["links"]:
        lid, src, src_slot, dst, dst_slot, ltype = link[:6]
        links[lid] = (src, src_slot, dst, dst_slot, type_name(ltype))

    def where(node, inp=None):
        s = f"{name}: node {node['id']} ({node['type']})"
        return s + (f", input '{inp}'" if inp else "")

    prompt = {}
    for node in workflow["nodes"]:
        ntype = node["type"]
        if ntype in FRONTEND_ONLY or node.get("mode", 0) == MODE_MUTED:
            continue
        if node.get("mode", 0) == MODE_BYPASSED:
            raise WorkflowError(f"{where(node)}: bypassed nodes are not supported by this converter")
        cls = node_classes.get(ntype)
        if cls is None:
            raise WorkflowError(f"{where(node)}: unknown node type '{ntype}' (not registered in the host: "
                                "a core node that does not exist in this ComfyUI, or a pack that is not installed)")
        specs = input_specs(cls)
        inputs = {}
        linked = {}
        for slot, inp in enumerate(node.get("inputs") or []):
            iname = inp["name"]
            if iname not in specs:
                raise WorkflowError(f"{where(node, iname)}: the node has no input named '{iname}' "
                                    f"(its inputs are {list(specs)})")
            declared = type_name(specs[iname][0][0])
            if inp.get("type") is not None and not types_match(type_name(inp["type"]), declared):
                raise WorkflowError(f"{where(node, iname)}: the workflow says type {type_name(inp['type'])}, "
                                    f"the node's schema says {declared}")
            if inp.get("link") is None:
                continue
            lid = inp["link"]
            if lid not in links:
                raise WorkflowError(f"{where(node, iname)}: link {lid} is not in the workflow's links")
            src, src_slot, dst, dst_slot, ltype = links[lid]
            if dst != node["id"] or dst_slot != slot:
                raise WorkflowError(f"{where(node, iname)}: link {lid} points at node {dst} slot {dst_slot}, "
                                    f"not at this input (slot {slot})")
            src_node = nodes.get(src)
            if src_node is None:
                raise WorkflowError(f"{where(node, iname)}: link {lid} comes from node {src}, which does not exist")
            src_cls = node_classes.get(src_node["type"])
            if src_cls is None:
                raise WorkflowError(f"{where(src_node)}: unknown node type '{src_node['type']}'")
            outs = output_types(src_cls)
            if not 0 <= src_slot < len(outs):
                raise WorkflowError(f"{where(node, iname)}: link {lid} comes from output {src_slot} of "
                                    f"{src_node['type']}, which has {len(outs)} outputs")
            if not types_match(ltype, outs[src_slot]):
                raise WorkflowError(f"{where(node, iname)}: link {lid} has type {ltype}, but output {src_slot} of "
                                    f"node {src} ({src_node['type']}) is {outs[src_slot]}")
            if not types_match(outs[src_slot], declared):
                raise WorkflowError(f"{where(node, iname)}: expects {declared}, but is linked to output "
                                    f"{src_slot} of node {src} ({src_node['type']}), which is {outs[src_slot]}")
            if src_node.get("mode", 0) == MODE_MUTED:
                raise WorkflowError(f"{where(node, iname)}: linked to muted node {src}")
            linked[iname] = [str(src), src_slot]

        values = list(node.get("widgets_values") or [])
        if isinstance(node.get("widgets_values"), dict):
            raise WorkflowError(f"{where(node)}: widgets_values as a dict is not supported")
        widgets = widget_names(cls)
        expected = len(widgets) + sum(extra_frontend_values(n, s) for n, s in widgets)
        if len(values) != expected:
            raise WorkflowError(
                f"{where(node)}: {len(values)} widget values {values!r}, but the node's schema has "
                f"{len(widgets)} widget inputs {[n for n, _ in widgets]} (+{expected - len(widgets)} frontend-only "
                f"values) = {expected}: the node's inputs changed; update the workflow")
        i = 0
        for wname, spec in widgets:
            value = values[i]
            i += 1
            extra = extra_frontend_values(wname, spec)
            opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if extra and type_name(spec[0]) in ("INT", "FLOAT") and opts.get(
                    "control_after_generate", wname in ("seed", "noise_seed")):
                if values[i] not in CONTROL_VALUES:
                    raise WorkflowError(f"{where(node, wname)}: expected a control_after_generate value "
                                        f"{sorted(CONTROL_VALUES)} after the value, got {values[i]!r}")
            i += extra
            inputs[wname] = value
        for iname, src in linked.items():
            inputs[iname] = src  # a widget converted to a socket takes its link
        for iname, (spec, required) in specs.items():
            if required and not is_widget(spec) and iname not in inputs:
                raise WorkflowError(f"{where(node, iname)}: required input is not connected")
        entry = {"class_type": ntype, "inputs": inputs}
        if node.get("title"):
            entry["_meta"] = {"title": node["title"]}
        prompt[str(node["id"])] = entry
    return prompt


def load(path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def convert_file(path, node_classes: dict) -> dict:
    return convert(load(path), node_classes, name=Path(path).name)
