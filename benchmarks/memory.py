"""Peak memory of a measurement run in a fresh child process (shared by the benchmarks).

A benchmark runs each measurement as ``python -m benchmarks.<name> --child ...`` (:func:`run_child`), so
that every peak is clean; the child starts an :class:`AnonSampler`, does the work, and prints one JSON
line with :func:`peaks` in it. Peaks:

* ``peak_hwm_bytes``: the kernel's high-water mark of resident memory (``VmHWM``, the same as
  ``getrusage().ru_maxrss``), file-backed pages (a memory-mapped checkpoint) included;
* ``peak_anon_bytes``: the peak of anonymous (non file-backed) resident memory, sampled every 20 ms.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def read_status_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (``VmHWM``, ``RssAnon``, ...); 0 when absent."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class AnonSampler(threading.Thread):
    """Samples RssAnon (KiB) from /proc/self/status every ``period`` seconds; keeps the peak."""

    def __init__(self, period: float = 0.02):
        super().__init__(daemon=True)
        self.period, self.peak_kib, self._done = period, 0, threading.Event()

    read_kib = staticmethod(read_status_kib)

    def run(self) -> None:
        while not self._done.is_set():
            self.peak_kib = max(self.peak_kib, read_status_kib("RssAnon"))
            time.sleep(self.period)

    def stop(self) -> int:
        self._done.set()
        self.join()
        return max(self.peak_kib, read_status_kib("RssAnon"))


def peaks(sampler: AnonSampler) -> dict[str, int]:
    """Stop ``sampler``; the process's peaks so far, in bytes (see the module docstring)."""
    peak_anon_kib = sampler.stop()
    return {
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "peak_hwm_bytes": read_status_kib("VmHWM") * 1024,
        "peak_anon_bytes": peak_anon_kib * 1024,
    }


def run_child(module: str, args: list[str], env: dict[str, str] | None = None) -> dict:
    """Run ``python -m module --child *args`` from the repository root in a fresh process; the JSON
    object on its last line of stdout. ``env`` is added to the environment (tqdm is always off)."""
    command = [sys.executable, "-m", module, "--child", *args]
    environment = os.environ | {"TQDM_DISABLE": "1"} | (env or {})
    done = subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{module} child {args[:1]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def emit(result: dict) -> None:
    """A child's result: one JSON line on stdout (what :func:`run_child` reads)."""
    sys.stdout.write(json.dumps(result) + "\n")


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"
