"""Boots the real ComfyUI in this process for host tests.

The pack is loaded the way ComfyUI loads custom nodes (`nodes.load_custom_node`), never imported as a normal
package, so the tests exercise the same module objects as the host does.
"""
from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def find_comfyui() -> Path | None:
    """COMFYUI_PATH, else the ComfyUI this pack sits in (`ComfyUI/custom_nodes/<pack>`), else the pristine
    archive in ../shared/host, unpacked once into a cache outside the clone (host_archive.py)."""
    candidates = []
    if os.environ.get("COMFYUI_PATH"):
        candidates.append(Path(os.environ["COMFYUI_PATH"]))
    if REPO.parent.name == "custom_nodes":
        candidates.append(REPO.parent.parent)
    for c in [*candidates, None]:
        if c is None:
            from host_archive import unpacked

            c = unpacked("host")
            if c is None:
                return None
        if (c / "comfy" / "model_patcher.py").is_file() and (c / "nodes.py").is_file():
            return c.resolve()
    return None


class HostUnavailable(RuntimeError):
    pass


class PromptFailed(AssertionError):
    """A prompt failed validation or execution; the message carries the host's own error text."""

    def __init__(self, message: str, errors: list | dict | None = None):
        super().__init__(message)
        self.errors = errors


class _StubServer:
    """The few attributes PromptExecutor reads from PromptServer; events are recorded for assertions."""

    def __init__(self):
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.sockets_metadata = {}
        self.events = []

    def send_sync(self, event, data, sid=None):
        self.events.append((event, data))

    def queue_updated(self):
        pass


class ComfyHost:
    """One booted ComfyUI per test session, with private model/output folders."""

    def __init__(self, comfy_path: Path, work_dir: Path):
        self.path = comfy_path
        self.work_dir = work_dir
        self.models_dir = work_dir / "models"
        self.output_dir = work_dir / "output"
        self.input_dir = work_dir / "input"
        self._boot()

    def _boot(self):
        sys.path.insert(0, str(self.path))
        import torch

        from comfy.cli_args import args

        if not torch.cuda.is_available():
            args.cpu = True
        args.disable_api_nodes = True
        import utils.extra_config  # noqa: F401  (must precede `import nodes`, see host notes)
        import folder_paths

        for d in (self.models_dir, self.output_dir, self.input_dir, self.work_dir / "temp"):
            d.mkdir(parents=True, exist_ok=True)
        folder_paths.set_output_directory(str(self.output_dir))
        folder_paths.set_input_directory(str(self.input_dir))
        folder_paths.set_temp_directory(str(self.work_dir / "temp"))
        # Private models dir first, so fixtures are found and nothing of a user's install is picked up.
        for name in ("checkpoints", "vae", "vae_approx", "clip_vision", "loras", "controlnet",
                     "diffusion_models", "clip", "ipadapter", "atomovideo", "animatediff_models"):
            (self.models_dir / name).mkdir(exist_ok=True)
            folder_paths.add_model_folder_path(name, str(self.models_dir / name), is_default=True)
        import execution
        import nodes

        self.folder_paths = folder_paths
        self.nodes = nodes
        self.execution = execution
        asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
        ok = asyncio.run(nodes.load_custom_node(str(REPO)))
        if not ok:
            raise HostUnavailable(f"ComfyUI failed to import the pack from {REPO} (see the log above)")
        # ComfyUI names a folder pack's module after its full path, "." replaced by "_x_" (nodes.py).
        self.pack = sys.modules[str(REPO).replace(".", "_x_")]

    # -- pack internals, as the host loaded them ---------------------------------------------
    def pack_module(self, dotted: str):
        """A submodule of the pack as ComfyUI imported it, e.g. `atomo_host.inflation` (the same object as `pack.module`)."""
        return sys.modules[f"{self.pack.__name__}.{dotted}"]

    # -- prompts ------------------------------------------------------------------------------
    def validate(self, prompt: dict):
        return asyncio.run(self.execution.validate_prompt(str(uuid.uuid4()), prompt, None))

    def run(self, prompt: dict, *, expect_failure: bool = False):
        """Validate and execute an API-format prompt. Returns (executor, history outputs)."""
        valid = self.validate(prompt)
        if not valid[0]:
            if expect_failure:
                return None, valid
            raise PromptFailed(f"prompt invalid: {valid[1]} {valid[3]}", valid[3])
        server = _StubServer()
        ex = self.execution.PromptExecutor(server, cache_type=False)
        ex.execute(prompt, str(uuid.uuid4()), {}, valid[2])
        self.last_events = server.events
        if not ex.success:
            errors = [d for e, d in ex.status_messages if e in ("execution_error", "execution_interrupted")]
            if expect_failure:
                return ex, errors
            msg = errors[0].get("exception_message", errors) if errors else ex.status_messages
            raise PromptFailed(f"prompt failed: {msg}", errors)
        if expect_failure:
            raise PromptFailed("prompt was expected to fail but succeeded")
        return ex, ex.history_result.get("outputs", {})

    def node_class(self, node_id: str):
        return self.nodes.NODE_CLASS_MAPPINGS[node_id]

    # -- calling nodes directly (for tests that need tensors, not files) -----------------------
    def call(self, node_id: str, **inputs):
        """Run one node's function with Python values and return its outputs as a tuple."""
        cls = self.node_class(node_id)
        if hasattr(cls, "define_schema"):  # V3
            out = cls.execute(**inputs)
            if hasattr(out, "__await__"):
                out = asyncio.run(out)
            return tuple(out.result) if out.result is not None else ()
        obj = cls()
        out = getattr(obj, cls.FUNCTION)(**inputs)
        if hasattr(out, "__await__"):
            out = asyncio.run(out)
        return tuple(out["result"]) if isinstance(out, dict) else tuple(out)

    def load_checkpoint(self, name: str):
        """(model, clip, vae) of a checkpoint in the host's checkpoints folder."""
        return self.call("CheckpointLoaderSimple", ckpt_name=name)[:3]

    def encode(self, clip, text: str):
        return self.call("CLIPTextEncode", clip=clip, text=text)[0]

    def one_step(self, model, positive, negative, latent: dict, *, cfg=1.0, denoise=0.5):
        """One Euler step from `latent` without added noise: a deterministic function of the model."""
        return self.ksample(model, positive, negative, latent, steps=1, cfg=cfg, disable_noise=True,
                            denoise=denoise)["samples"]

    def ksample(self, model, positive, negative, latent: dict, *, seed=0, steps=1, cfg=1.0,
                sampler="euler", scheduler="simple", denoise=1.0, disable_noise=False):
        """`nodes.common_ksampler`, the KSampler node's own code path; returns the LATENT dict."""
        return self.nodes.common_ksampler(model, seed, steps, cfg, sampler, scheduler, positive, negative,
                                          latent, denoise=denoise, disable_noise=disable_noise)[0]
