"""Source asset ``image_folders``: the catalog's image folders, one partition per dataset.

Observed, never materialized: a partition's data version is the content fingerprint of its folder (every
file's bytes, cached per listing), so the lineage starts at the user's images and the UI marks
``dataset_tokens`` stale when an image changes. Observed by the runs of ``dataset_tokens_job`` (the
dataset's own partition, before it is encoded) and by "Observe" in the UI (every dataset).
"""

from dagster import AssetExecutionContext, BackfillPolicy

from assets.shared.observations import observable_partitioned_source, observed_versions
from assets.shared.partitions import DATASETS, datasets_partitions
from resources.artifact_store import ArtifactStore
from resources.dataset_catalog import DatasetCatalog


@observable_partitioned_source(
    partitions_def=datasets_partitions,
    group_name="datasets",
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=1),  # as dataset_tokens, read in the same job
    description="The image folders of the dataset catalog (one partition per dataset); data version = "
    "content fingerprint of the folder.",
)
def image_folders(context: AssetExecutionContext, store: ArtifactStore, catalog: DatasetCatalog):
    keys = [context.partition_key] if context.has_partition_key else context.instance.get_dynamic_partitions(DATASETS)
    paths = {e.key: e.path for e in catalog.entries()}
    return observed_versions(keys, lambda key: store.fingerprints.folder(paths[key]), context.log)
