"""The demo's bundled AtomoVideo file, which the demo tests, workflow tests and README test run with.

It is committed (trained by `python -m atomo_demo.retrain`); a checkout without it is broken, so the tests fail
with the command that regenerates it instead of writing a stand-in into the source tree.
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.append(str(HERE))

from pack import module  # noqa: E402


def ensure_demo_atomovideo() -> tuple[Path, bool]:
    """(path of the bundled demo AtomoVideo file, False): it must exist. Needs the booted host."""
    demo = module("atomo_host.demo_model")
    path = demo.ATOMOVIDEO_DIR / demo.ATOMOVIDEO_FILE
    assert path.is_file(), (f"{path} is missing from the checkout: `git checkout -- {path.parent}` or regenerate it "
                            "with `python -m atomo_demo.retrain OUT --install`")
    return path, False
