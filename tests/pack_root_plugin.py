"""Pytest plugin (loaded with -p from the root configuration): collect the repository root as a plain folder.

The root is a ComfyUI pack whose `__init__.py` needs the running host; as a pytest Package it would be imported
on setup under a name taken from the folder. A conftest cannot do this: the root folder is collected with the
hooks of its parent directory, so only a plugin reaches it.
"""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def pytest_collect_directory(path, parent):
    if path == REPO:
        return pytest.Dir.from_parent(parent, path=path)
    return None
