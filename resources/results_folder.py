"""The results folder: fine-tune results a team reports after the fact, one file per report."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from ml_core.ground_truth import RESULT_SUFFIXES, ResultFile
from resources.settings import default_results_dir


class ResultsFolder(ConfigurableResource):
    """``<root>/*.csv`` and ``<root>/*.json`` in the performance-table formats (sub-folders and hidden
    files are not read). A folder that does not exist yet holds no result."""

    root: str = Field(default_factory=default_results_dir, description="folder of result files (*.csv, *.json)")

    def files(self) -> list[Path]:
        """The result files, sorted by name."""
        folder = Path(self.root)
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir()
                      if p.suffix.lower() in RESULT_SUFFIXES and not p.name.startswith(".") and p.is_file())

    def read(self, path: Path) -> ResultFile:
        """One file's bytes, read once (hashed and parsed as read)."""
        return ResultFile(path.name, path.read_bytes())
