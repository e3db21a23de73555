"""Asset ``dataset_tokens``: image-encoder features of one dataset in class-balanced rows (zarr).

The encoder is the ``image_encoder`` resource's: an open_clip model (CLIP) when one is configured,
else the demo's ImageNet EfficientNet-Lite0 (not CLIP); the metadata names which.
"""

from dagster import AssetCheckResult, AssetCheckSpec, AssetExecutionContext
from upath import UPath

from assets.shared.artifacts import materialize_asset
from assets.shared.configs import dagster_config
from assets.shared.loaders import TOKENS_DIR
from assets.shared.partitions import asset_one_partition_per_run, datasets_partitions
from ml_core.images import (
    EXECUTION_FIELDS,
    TokenWriterConfig,
    encoder_spec_fingerprint,
    load_image_encoder,
    scan_image_folder,
    write_dataset_tokens,
)
from resources.artifact_store import ArtifactStore
from resources.compute import ComputeDevice
from resources.dataset_catalog import DatasetCatalog
from resources.image_encoder import ImageEncoderResource

CODE_VERSION = "3"  # 2: image-size guard, single-split fallback; 3: one content fingerprint per dataset
TokensAssetConfig = dagster_config(TokenWriterConfig(), "TokensAssetConfig")


def encoder_label(description: dict) -> str:
    """How the metadata names the encoder of a token artifact: its architecture, and what its weights are."""
    text = description.get("architecture", "?")
    if description.get("standin") or "random" in str(description.get("pretrained", "")):
        text += " (STAND-IN: random weights, not CLIP)"
    if description.get("weights_note"):
        text += f" -- {description['weights_note']}"
    return text


@asset_one_partition_per_run(
    partitions_def=datasets_partitions,
    code_version=CODE_VERSION,
    group_name="datasets",
    kinds={"pytorch", "zarr"},
    deps=["image_folders"],  # the source asset of the image folders (assets/image_folders.py)
    check_specs=[AssetCheckSpec("enough_valid_images", asset="dataset_tokens")],
    description="Image features from the image encoder (open_clip, or the demo's EfficientNet-Lite0), one image "
    "per class per row, sharded zarr v3.",
)
def dataset_tokens(
    context: AssetExecutionContext,
    config: TokensAssetConfig,
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
        summary = write_dataset_tokens(index, encoder, directory / TOKENS_DIR, config.to_ml())
        return summary.content_hash, {
            "dataset": entry.name,
            "split": index.split,
            "n_rows": summary.n_rows,
            "n_classes": summary.n_classes,
            "feature_dim": summary.feature_dim,
            "n_valid": summary.n_valid,
            "n_skipped": summary.n_skipped,
            "skipped": [f"{s.path}: {s.reason}" for s in summary.skipped[:20]],
            "encoder": encoder.describe(),
        }

    fingerprints = store.fingerprints
    result = materialize_asset(
        context, store, config={**config.model_dump(exclude=EXECUTION_FIELDS), "split": catalog.split},
        inputs={"images": fingerprints.folder(entry.path),
                "encoder": encoder_spec_fingerprint(spec, fingerprints.file_sha256)},
        build=build,
    )
    s = result.summary
    yield result.output({
        "dataset": s["dataset"],
        "split": s["split"],
        "shape": f"({s['n_rows']}, {s['n_classes']}, {s['feature_dim']})",
        "n_valid_images": s["n_valid"],
        "n_skipped_images": s["n_skipped"],
        "skipped_examples": "\n".join(s["skipped"]) or "none",
        "encoder": encoder_label(s["encoder"]),
        "encoder_weights": str(s["encoder"].get("pretrained", "")),
    })
    yield AssetCheckResult(
        check_name="enough_valid_images",
        passed=s["n_valid"] > 0 and s["n_classes"] >= 2,
        metadata={"n_valid": s["n_valid"], "n_skipped": s["n_skipped"]},
    )
