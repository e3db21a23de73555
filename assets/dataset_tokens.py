"""Asset ``dataset_tokens``: CLIP image features of one dataset in class-balanced rows (zarr)."""

from typing import Literal

from dagster import AssetCheckResult, AssetCheckSpec, AssetExecutionContext, BackfillPolicy, Config, Output, asset
from upath import UPath

from assets.artifacts import ArtifactRef, materialize_cached
from assets.partitions import datasets_partitions
from ml_core.dataset_tokens import DatasetTokens, TokenWriterConfig, read_dataset_tokens, write_dataset_tokens
from ml_core.fingerprints import encoder_spec_fingerprint, image_folder_fingerprint
from ml_core.image_encoder import load_image_encoder
from ml_core.image_folder import scan_image_folder
from resources.artifact_store import ArtifactStore
from resources.compute import ComputeDevice
from resources.dataset_catalog import DatasetCatalog
from resources.image_encoder import ImageEncoderResource

CODE_VERSION = "2"  # 2: image-size guard, single-split fallback
TOKENS_DIR = "tokens.zarr"


class TokensConfig(Config):
    rows_per_shard: int = 16
    max_rows: int = 64
    batch_size: int = 64
    dtype: Literal["float16", "float32"] = "float16"
    seed: int = 0
    num_workers: int = 0

    def writer_config(self) -> TokenWriterConfig:
        return TokenWriterConfig(**self.model_dump())


@asset(
    partitions_def=datasets_partitions,
    code_version=CODE_VERSION,
    io_manager_key="artifact_io_manager",
    group_name="datasets",
    kinds={"pytorch", "zarr"},
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=1),
    check_specs=[AssetCheckSpec("enough_valid_images", asset="dataset_tokens")],
    description="Image features from the image encoder, one image per class per row, sharded zarr v3.",
)
def dataset_tokens(
    context: AssetExecutionContext,
    config: TokensConfig,
    store: ArtifactStore,
    catalog: DatasetCatalog,
    image_encoder: ImageEncoderResource,
    compute: ComputeDevice,
):
    entry = catalog.entry(context.partition_key)
    spec = image_encoder.spec(device=compute.torch_device())

    def build(directory: UPath) -> tuple[str, dict]:
        index = scan_image_folder(entry.path, catalog.split)
        encoder = load_image_encoder(spec)
        summary = write_dataset_tokens(index, encoder, directory / TOKENS_DIR, config.writer_config())
        description = encoder.describe()
        return summary.content_hash, {
            "dataset": entry.name,
            "split": index.split,
            "n_rows": summary.n_rows,
            "n_classes": summary.n_classes,
            "feature_dim": summary.feature_dim,
            "n_valid": summary.n_valid,
            "n_skipped": summary.n_skipped,
            "skipped": [f"{s.path}: {s.reason}" for s in summary.skipped[:20]],
            "encoder": description,
        }

    result = materialize_cached(
        store,
        asset="dataset_tokens",
        partition=context.partition_key,
        code_version=CODE_VERSION,
        config={**config.model_dump(), "split": catalog.split},
        inputs={"images": image_folder_fingerprint(entry.path), "encoder": encoder_spec_fingerprint(spec)},
        build=build,
        log=context.log,
    )
    s = result.summary
    encoder_text = s["encoder"].get("architecture", "?")
    if s["encoder"].get("standin") or "random" in str(s["encoder"].get("pretrained", "")):
        encoder_text += " (STAND-IN: random weights, not CLIP)"
    if s["encoder"].get("weights_note"):
        encoder_text += f" -- {s['encoder']['weights_note']}"
    yield Output(
        result.ref,
        data_version=result.data_version,
        metadata={
            **result.base_metadata(),
            "dataset": s["dataset"],
            "split": s["split"],
            "shape": f"({s['n_rows']}, {s['n_classes']}, {s['feature_dim']})",
            "n_valid_images": s["n_valid"],
            "n_skipped_images": s["n_skipped"],
            "skipped_examples": "\n".join(s["skipped"]) or "none",
            "encoder": encoder_text,
            "encoder_weights": str(s["encoder"].get("pretrained", "")),
        },
    )
    yield AssetCheckResult(
        check_name="enough_valid_images",
        passed=s["n_valid"] > 0 and s["n_classes"] >= 2,
        metadata={"n_valid": s["n_valid"], "n_skipped": s["n_skipped"]},
    )


def load_tokens(ref: ArtifactRef, store: ArtifactStore) -> DatasetTokens:
    return read_dataset_tokens(ref.directory(store) / TOKENS_DIR)
