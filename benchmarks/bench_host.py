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


class PeakRSS:
    """Highest resident memory while the block runs, sampled every millisecond by a thread (a CPU memory probe:
    `ru_maxrss` is the whole process's lifetime peak, model loading included)."""

    def __enter__(self):
        import threading

        self.start = self.peak = rss_bytes()
        self._stop = threading.Event()

        def sample():
            while not self._stop.wait(0.001):
                self.peak = max(self.peak, rss_bytes())
        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def rise(self) -> int:
        return self.peak - self.start
