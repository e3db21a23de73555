"""Source asset ``model_checkpoints``: the zoo's checkpoint files, one partition per model.

Observed, never materialized: a partition's data version is the SHA-256 of its file (cached per path, size
and mtime), so the lineage starts at the user's files and the UI marks ``model_parameters`` stale when a
checkpoint's bytes change. Observed by the runs of the ``embed_models`` / ``flatten_models`` jobs (the
model's own partition, before its parameters are flattened) and by "Observe" in the UI (every model).
"""

from dagster import AssetExecutionContext

from assets.shared.observations import observable_partitioned_source, observed_versions
from assets.shared.partitions import MODELS, models_partitions
from resources.artifact_store import ArtifactStore
from resources.model_zoo import ModelZoo


@observable_partitioned_source(
    partitions_def=models_partitions,
    group_name="models",
    description="The zoo's checkpoint files (one partition per model); data version = SHA-256 of the file.",
)
def model_checkpoints(context: AssetExecutionContext, store: ArtifactStore, zoo: ModelZoo):
    keys = [context.partition_key] if context.has_partition_key else context.instance.get_dynamic_partitions(MODELS)
    paths = {e.key: e.path for e in zoo.entries()}
    return observed_versions(keys, lambda key: store.fingerprints.file_sha256(paths[key]), context.log)
