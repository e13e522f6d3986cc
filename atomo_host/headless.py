"""An API prompt executed by ComfyUI's own executor in this process, without the server (the demo command).

`execution.validate_prompt` and `execution.PromptExecutor` are what the server's prompt worker runs; the server
object they talk to is replaced by `_Quiet`, which keeps nothing but the attributes they read. Progress comes from
ComfyUI's global progress hook (`comfy.utils.set_progress_bar_global_hook`, the hook the server installs for the
web UI), shown as one tqdm bar per node that reports progress.
"""
from __future__ import annotations

import asyncio
import uuid
from contextlib import contextmanager

from tqdm import tqdm

import comfy.utils
import execution


class PromptError(RuntimeError):
    """The prompt failed validation or execution; the message is the host's own, with the node named."""


class _Quiet:
    """The attributes PromptExecutor reads from PromptServer; with no client nothing is sent."""

    def __init__(self):
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.sockets_metadata = {}

    def send_sync(self, event, data, sid=None):
        pass

    def queue_updated(self):
        pass


class NodeProgress:
    """ComfyUI's progress hook as tqdm bars: a new bar whenever another node reports progress."""

    def __init__(self, prompt: dict, file=None):
        self.names = {nid: n.get("_meta", {}).get("title") or n["class_type"] for nid, n in prompt.items()}
        self.file = file
        self.bar = None
        self.node = None

    def hook(self, value, total, preview_image=None, prompt_id=None, node_id=None):
        if node_id is None:
            from comfy_execution.utils import get_executing_context

            context = get_executing_context()
            node_id = context.node_id if context is not None else None
        if self.bar is None or node_id != self.node:
            self.close()
            self.node = node_id
            self.bar = tqdm(total=total, desc=self.names.get(node_id, str(node_id)), unit="step", file=self.file,
                            dynamic_ncols=True)
        self.bar.total = total
        self.bar.update(max(0, value - self.bar.n))

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@contextmanager
def progress_hook(progress: NodeProgress):
    """Install the hook (and silence the samplers' own tqdm) for the run, then put the host's back."""
    previous, enabled = comfy.utils.PROGRESS_BAR_HOOK, comfy.utils.PROGRESS_BAR_ENABLED
    comfy.utils.set_progress_bar_global_hook(progress.hook)
    comfy.utils.set_progress_bar_enabled(False)
    try:
        yield progress
    finally:
        progress.close()
        comfy.utils.set_progress_bar_global_hook(previous)
        comfy.utils.set_progress_bar_enabled(enabled)


def execute(prompt: dict, progress_file=None) -> dict:
    """Validate and run `prompt`; node id -> its UI outputs (what the history records: saved files)."""
    prompt_id = str(uuid.uuid4())
    valid, error, outputs, node_errors = asyncio.run(execution.validate_prompt(prompt_id, prompt, None))
    if not valid:
        details = "; ".join(f"node {nid} ({prompt[nid]['class_type']}): "
                            + ", ".join(e.get("details") or e.get("message", "") for e in v.get("errors", []))
                            for nid, v in (node_errors or {}).items())
        raise PromptError(f"the prompt is invalid: {error.get('message', error)}" + (f" ({details})" if details
                                                                                     else ""))
    executor = execution.PromptExecutor(_Quiet(), cache_type=False)
    with progress_hook(NodeProgress(prompt, progress_file)):
        executor.execute(prompt, prompt_id, {}, outputs)
    if not executor.success:
        errors = [d for e, d in executor.status_messages if e in ("execution_error", "execution_interrupted")]
        if errors:
            e = errors[0]
            kind = str(e.get("exception_type", "")).rsplit(".", 1)[-1]  # the pack's module names are paths
            raise PromptError(f"node {e.get('node_id')} ({e.get('node_type')}) failed: {kind}: "
                              f"{str(e.get('exception_message', 'interrupted')).strip()}")
        raise PromptError(f"the prompt failed: {executor.status_messages}")
    return executor.history_result.get("outputs", {})
