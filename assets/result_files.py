"""Source asset ``result_files``: the results folder's settled files (``*.csv`` / ``*.json``).

Observed, never materialized: its data version is a digest of every settled file's name and SHA-256, so the
lineage starts at the team's reports and the UI marks ``result_history`` stale when a file is added, replaced
or removed. Observed by the runs of ``ingest_results`` (before the history reads the folder) and by "Observe"
in the UI. A file still being written (modified less than the folder's ``settle_seconds`` ago) is not counted.
"""

import hashlib

from dagster import AssetExecutionContext, DataVersion

from assets.shared.observations import observable_partitioned_source
from resources.artifact_store import ArtifactStore
from resources.results_folder import ResultsFolder


def results_fingerprint(store: ArtifactStore, results: ResultsFolder) -> str:
    """SHA-256 over ``name:sha256`` of every settled result file, sorted by name (an empty folder has one too)."""
    digest = hashlib.sha256()
    for path in results.files():
        digest.update(f"{path.name}:{store.fingerprints.file_sha256(path)}\n".encode())
    return digest.hexdigest()


@observable_partitioned_source(
    group_name="ground_truth",
    description="The results folder's settled *.csv / *.json files (fine-tune results reported later); data "
    "version = digest of every file's name and SHA-256.",
)
def result_files(context: AssetExecutionContext, store: ArtifactStore, results: ResultsFolder):
    return DataVersion(results_fingerprint(store, results))
