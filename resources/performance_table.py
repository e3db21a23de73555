"""The performance table resource: past fine-tuning results, JSON or CSV."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from ml_core.ground_truth import PerformanceTable, load_performance_table
from resources.settings import default_performance_table


class PerformanceTableResource(ConfigurableResource):
    path: str = Field(default_factory=default_performance_table, description="JSON or CSV performance table")

    def load(self) -> PerformanceTable:
        return load_performance_table(Path(self.path))
