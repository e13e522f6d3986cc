"""The pristine ComfyUI and AnimateDiff-Evolved archives in ../shared, unpacked once into a cache outside the clone.

Used by the test harness (when neither COMFYUI_PATH nor a surrounding ComfyUI is there) and by .ci/run, which
needs the host's folder before the tests to install its requirements:

    python3 tests/host_archive.py host     # prints the unpacked ComfyUI folder (nothing, exit 1, without archive)
    python3 tests/host_archive.py peer     # the same for AnimateDiff-Evolved
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tarfile
from pathlib import Path

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
ARCHIVES = {  # kind -> (glob under shared/, top folder inside the archive)
    "host": ("host/ComfyUI-*.tar.gz", "ComfyUI"),
    "peer": ("peers/ComfyUI-AnimateDiff-Evolved-*.tar.gz", "ComfyUI-AnimateDiff-Evolved"),
}


def cache_dir() -> Path:
    if os.environ.get("ATOMO_CI_CACHE"):
        return Path(os.environ["ATOMO_CI_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "atomovideo-ci"


def unpacked(kind: str) -> Path | None:
    """The archive's top folder, unpacked on first use into cache_dir()/<first 16 hex of its sha256>/."""
    pattern, top = ARCHIVES[kind]
    found = sorted(SHARED.glob(pattern))
    if not found:
        return None
    archive = found[-1]
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()[:16]
    dest = cache_dir() / digest
    if not (dest / ".complete").is_file():
        print(f"unpacking {archive.name} into {dest}", file=sys.stderr)
        partial = dest.with_name(dest.name + f".partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        with tarfile.open(archive) as tar:
            tar.extractall(partial, filter="data")
        (partial / ".complete").touch()
        shutil.rmtree(dest, ignore_errors=True)
        try:
            partial.rename(dest)
        except OSError:  # another process finished first: use its copy
            shutil.rmtree(partial, ignore_errors=True)
    return dest / top


if __name__ == "__main__":
    path = unpacked(sys.argv[1])
    if path is None:
        sys.exit(1)
    print(path)
