"""Test harness: host-free tests always run; host tests boot the real ComfyUI once per session.

Host tests use the `comfy` fixture (or are marked `host`); without a ComfyUI checkout they skip with a visible
reason. ComfyUI is found through COMFYUI_PATH or the ComfyUI this pack sits in (custom_nodes/).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# tests/ only: the repository root stays off sys.path, so the pack is never imported as top-level `atomo_core`
# (a second copy of every class) and its `nodes/` never shadows ComfyUI's `nodes`. The pack's modules come from
# pack.py, under the name ComfyUI gives them.
TESTS = str(Path(__file__).resolve().parent)
if TESTS not in sys.path:
    sys.path.append(TESTS)

import pack  # noqa: E402,F401  (registers the pack's package name before any test module imports from it)
from comfy_host import ComfyHost, find_comfyui  # noqa: E402

SHARED_MODELS = REPO.parent / "shared" / "models"
_HOST = None
_HOST_ERROR = None


_FILE_SECONDS: dict[str, float] = {}


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::", 1)[0]
    _FILE_SECONDS[path] = _FILE_SECONDS.get(path, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter):
    """Wall time per test file (setup, call and teardown), slowest first: where a CI run spends its time."""
    if not _FILE_SECONDS:
        return
    terminalreporter.section("seconds per test file")
    for path, seconds in sorted(_FILE_SECONDS.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{seconds:8.1f}  {path}")


def pytest_report_header(config):
    path = find_comfyui()
    return f"ComfyUI host: {path}" if path else "ComfyUI host: none found (set COMFYUI_PATH); host tests will skip"


@pytest.fixture(scope="session")
def comfy(tmp_path_factory):
    """The booted ComfyUI host with the pack loaded (skips when no ComfyUI is found)."""
    global _HOST, _HOST_ERROR
    if _HOST is None and _HOST_ERROR is None:
        path = find_comfyui()
        if path is None:
            _HOST_ERROR = ("no ComfyUI found: set COMFYUI_PATH to a ComfyUI checkout (>= 0.3.47), or put the ComfyUI "
                           "archive in ../shared/host/, to run host tests")
        else:
            _HOST = ComfyHost(path, tmp_path_factory.mktemp("comfy"))
    if _HOST is None:
        pytest.skip(_HOST_ERROR)
    return _HOST


@pytest.fixture(scope="session")
def tiny_models(comfy):
    """Small real-layout models written into the host's model folders (see fixture_models.py)."""
    import fixture_models

    return fixture_models.write_all(comfy, SHARED_MODELS)


@pytest.fixture(scope="session")
def atomo_weights(comfy, tiny_models):
    """AtomoVideo fixture files in models/atomovideo, fitted to the tiny checkpoint's UNet."""
    import fixture_models

    model = comfy.load_checkpoint(tiny_models["checkpoint"])[0]
    return fixture_models.write_atomovideo_fixtures(comfy, model)


@pytest.fixture(scope="session")
def base(comfy, tiny_models):
    """(model, positive, negative) of the tiny checkpoint; nodes clone the model, so tests can share it."""
    model, clip, _ = comfy.load_checkpoint(tiny_models["checkpoint"])
    return model, comfy.encode(clip, "a cat walking"), comfy.encode(clip, "")


@pytest.fixture
def taesd_paths():
    enc, dec = SHARED_MODELS / "taesd_encoder.safetensors", SHARED_MODELS / "taesd_decoder.safetensors"
    if not (enc.is_file() and dec.is_file()):
        pytest.skip(f"real TAESD weights not found in {SHARED_MODELS}")
    return enc, dec
