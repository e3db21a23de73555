"""The results folder: fine-tune results a team reports after the fact, one file per report."""

from __future__ import annotations

import time
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from ml_core.ground_truth import RESULT_SUFFIXES, ResultFile
from resources.settings import default_results_dir


class FileChangedWhileRead(OSError):
    """A result file changed (size or mtime) while it was read: it is still being written."""


class ResultsFolder(ConfigurableResource):
    """``<root>/*.csv`` and ``<root>/*.json`` in the performance-table formats (sub-folders and hidden
    files are not read). A folder that does not exist yet holds no result.

    A file is *settled* once it has not been modified for ``settle_seconds``: only settled files are
    listed, so a report still being written (copied over a slow link, appended row by row) is never read
    half-way; one written elsewhere (or under a hidden name) and moved in is settled at once if its
    modification time is old enough, else a few seconds later.
    """

    root: str = Field(default_factory=default_results_dir, description="folder of result files (*.csv, *.json)")
    settle_seconds: float = Field(
        default=10.0, ge=0.0,
        description="a file is read only once it has not been modified for this long (a file being written is left "
        "for the next tick)",
    )

    def _candidates(self) -> list[Path]:
        folder = Path(self.root)
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir()
                      if p.suffix.lower() in RESULT_SUFFIXES and not p.name.startswith(".") and p.is_file())

    def _age(self, path: Path, now: float) -> float:
        try:
            return now - path.stat().st_mtime
        except OSError:  # removed since listed: neither settled nor being written
            return -1.0

    def files(self, now: float | None = None) -> list[Path]:
        """The settled result files, sorted by name (``now``: seconds since the epoch, default the clock)."""
        now = time.time() if now is None else now
        return [p for p in self._candidates() if self._age(p, now) >= self.settle_seconds]

    def unsettled(self, now: float | None = None) -> list[Path]:
        """The result files modified less than ``settle_seconds`` ago (still being written, perhaps)."""
        now = time.time() if now is None else now
        return [p for p in self._candidates() if 0.0 <= self._age(p, now) < self.settle_seconds]

    def read(self, path: Path) -> ResultFile:
        """One file's bytes, read once (hashed and parsed as read). Raises :class:`FileChangedWhileRead` when
        the file's size or modification time moved during the read."""
        before = path.stat()
        data = path.read_bytes()
        after = path.stat()
        if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) or len(data) != after.st_size:
            raise FileChangedWhileRead(f"{path}: changed while it was read (still being written?)")
        return ResultFile(path.name, data)
