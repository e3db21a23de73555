"""Asset ``model_parameters``: one checkpoint flattened into ``(n_chunks, 8192)`` chunks (zarr)."""

from dagster import AssetCheckResult, AssetCheckSpec, AssetExecutionContext, Config, Output, asset
from upath import UPath

from assets.artifacts import ArtifactRef, materialize_cached
from assets.partitions import models_partitions
from ml_core.checkpoints import open_checkpoint
from ml_core.flatten import CHUNK_SIZE
from ml_core.model_parameters import read_model_parameters, write_model_parameters
from ml_core.storage import sha256_file
from resources.artifact_store import ArtifactStore
from resources.model_zoo import ModelZoo

CODE_VERSION = "2"  # 2: fp8 weights, optimizer state never taken for weights
PARAMS_DIR = "params.zarr"


class FlattenConfig(Config):
    chunk_size: int = CHUNK_SIZE
    block_rows: int = 64


@asset(
    partitions_def=models_partitions,
    code_version=CODE_VERSION,
    io_manager_key="artifact_io_manager",
    group_name="models",
    kinds={"pytorch", "zarr"},
    check_specs=[AssetCheckSpec("finite_values", asset="model_parameters")],
    description="Every float tensor of one checkpoint, flattened and cut into fixed chunks, with a per-tensor index.",
)
def model_parameters(
    context: AssetExecutionContext, config: FlattenConfig, store: ArtifactStore, zoo: ModelZoo
):
    entry = zoo.entry(context.partition_key)
    source_hash = sha256_file(entry.path)
    source = {"name": entry.name, "file": entry.path.name, "architecture": entry.architecture, "sha256": source_hash}

    def build(directory: UPath) -> tuple[str, dict]:
        with open_checkpoint(entry.path, architecture=entry.architecture) as reader:
            summary = write_model_parameters(
                reader, directory / PARAMS_DIR, chunk_size=config.chunk_size, block_rows=config.block_rows, source=source
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

    result = materialize_cached(
        store,
        asset="model_parameters",
        partition=context.partition_key,
        code_version=CODE_VERSION,
        config={**config.model_dump(), "architecture": entry.architecture},
        inputs={"checkpoint": source_hash},
        build=build,
        log=context.log,
    )
    s = result.summary
    yield Output(
        result.ref,
        data_version=result.data_version,
        metadata={
            **result.base_metadata(),
            "model": s["model"],
            "file": s["file"],
            "shape": f"({s['n_chunks']}, {s['chunk_size']})",
            "n_parameters": s["n_parameters"],
            "n_tensors": s["n_tensors"],
            "n_skipped_tensors": s["n_skipped_tensors"],
        },
    )
    yield AssetCheckResult(
        check_name="finite_values",
        passed=bool(s["all_finite"]),
        metadata={"n_chunks": s["n_chunks"]},
        description="every stored weight value is finite (no NaN / inf in the checkpoint)",
    )


def load_parameters(ref: ArtifactRef, store: ArtifactStore):
    return read_model_parameters(ref.directory(store) / PARAMS_DIR)
