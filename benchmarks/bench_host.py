"""What the benchmark scripts share: the test harness on sys.path and a resident-memory reading."""
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for p in (str(REPO / "tests"),):  # not the root: the pack is imported as ComfyUI names it (tests/pack.py)
    if p not in sys.path:
        sys.path.append(p)


def rss_bytes() -> int:
    """Resident memory of this process now (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
