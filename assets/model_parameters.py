"""Asset ``model_parameters``: one checkpoint flattened into ``(n_chunks, 8192)`` chunks (zarr)."""

from dagster import AssetCheckResult, AssetCheckSpec, AssetExecutionContext, asset
from upath import UPath

from assets.shared.artifacts import materialize_asset
from assets.shared.configs import dagster_config
from assets.shared.loaders import PARAMS_DIR
from assets.shared.partitions import models_partitions
from ml_core.weights import FlattenConfig, open_checkpoint, write_model_parameters
from resources.artifact_store import ArtifactStore
from resources.model_zoo import ModelZoo

CODE_VERSION = "2"  # 2: fp8 weights, optimizer state never taken for weights
ParametersAssetConfig = dagster_config(FlattenConfig(), "ParametersAssetConfig")


@asset(
    partitions_def=models_partitions,
    code_version=CODE_VERSION,
    group_name="models",
    kinds={"pytorch", "zarr"},
    deps=["model_checkpoints"],  # the source asset of the checkpoint files (assets/model_checkpoints.py)
    check_specs=[AssetCheckSpec("finite_values", asset="model_parameters")],
    description="Every float tensor of one checkpoint, flattened and cut into fixed chunks, with a per-tensor index.",
)
def model_parameters(
    context: AssetExecutionContext, config: ParametersAssetConfig, store: ArtifactStore, zoo: ModelZoo
):
    entry = zoo.entry(context.partition_key)
    flatten = config.to_ml()
    source_hash = store.fingerprints.file_sha256(entry.path)
    source = {"name": entry.name, "file": entry.path.name, "architecture": entry.architecture, "sha256": source_hash}

    def build(directory: UPath) -> tuple[str, dict]:
        with open_checkpoint(entry.path, architecture=entry.architecture) as reader:
            summary = write_model_parameters(
                reader, directory / PARAMS_DIR, chunk_size=flatten.chunk_size, block_rows=flatten.block_rows,
                source=source,
            )
        return summary.content_hash, {
            "model": entry.name,
            "file": entry.path.name,
            "n_chunks": summary.n_chunks,
            "chunk_size": summary.chunk_size,
            "n_parameters": summary.total_values,
            "n_tensors": summary.n_tensors,
            "n_skipped_tensors": summary.n_skipped,
            "skipped": list(summary.skipped_names[:50]),
            "all_finite": summary.all_finite,
        }

    result = materialize_asset(
        context, store, config={**config.model_dump(), "architecture": entry.architecture},
        inputs={"checkpoint": source_hash}, build=build,
    )
    s = result.summary
    yield result.output({
        "model": s["model"],
        "file": s["file"],
        "shape": f"({s['n_chunks']}, {s['chunk_size']})",
        "n_parameters": s["n_parameters"],
        "n_tensors": s["n_tensors"],
        "n_skipped_tensors": s["n_skipped_tensors"],
    })
    yield AssetCheckResult(
        check_name="finite_values",
        passed=bool(s["all_finite"]),
        metadata={"n_chunks": s["n_chunks"]},
        description="every stored weight value is finite (no NaN / inf in the checkpoint)",
    )
