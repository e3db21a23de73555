"""Asset ``model_source_tokens``: image-encoder tokens of a sample of one model's pre-training data.

A model's card (sidecar or zoo-manifest entry) may name ``source_images``, an ImageFolder of
images like those it was trained on. They are encoded by the same image encoder as the dataset
tokens, so a target dataset can be compared with what each model has seen
(:mod:`ml_core.source_similarity`). A model without a sample gets an empty artifact that says so:
every model has a partition here, and its similarity is neutral downstream.

The artifact is keyed by the sample's content, not by the model: every model whose card names the
same images (a zoo of fine-tunes of one ImageNet backbone, the demo's four architectures per source
task) points at one artifact, encoded once.
"""

import hashlib

import numpy as np
from dagster import AssetExecutionContext, Config, Output, asset
from upath import UPath

from assets.artifacts import ArtifactRef, materialize_cached
from assets.partitions import models_partitions
from ml_core.dataset_tokens import DatasetTokens, TokenWriterConfig, read_dataset_tokens, write_dataset_tokens
from ml_core.fingerprints import encoder_spec_fingerprint, image_folder_fingerprint
from ml_core.image_encoder import load_image_encoder
from ml_core.image_folder import scan_image_folder
from ml_core.nearest_dataset import dataset_descriptor
from ml_core.source_similarity import stack_source_descriptors
from ml_core.storage import hash_parts
from resources.artifact_store import ArtifactStore
from resources.compute import ComputeDevice
from resources.image_encoder import ImageEncoderResource
from resources.model_zoo import ModelZoo, ZooError

CODE_VERSION = "2"  # 2: one artifact per sample content, shared by the models naming it
TOKENS_DIR = "tokens.zarr"
NO_SAMPLE = "no source sample"


class SourceTokensConfig(Config):
    max_rows: int = 32  # images per class kept from the sample
    batch_size: int = 64
    seed: int = 0


@asset(
    partitions_def=models_partitions,
    code_version=CODE_VERSION,
    io_manager_key="artifact_io_manager",
    group_name="models",
    kinds={"pytorch", "zarr"},
    description="Image-encoder tokens of the sample of pre-training images a model's card names "
    "(source_images); empty, and neutral downstream, for a model without one.",
)
def model_source_tokens(
    context: AssetExecutionContext,
    config: SourceTokensConfig,
    store: ArtifactStore,
    zoo: ModelZoo,
    image_encoder: ImageEncoderResource,
    compute: ComputeDevice,
):
    entry = zoo.entry(context.partition_key)
    folder = entry.source_images()
    if folder is not None and not folder.is_dir():
        raise ZooError(f"{entry.card_path or entry.path}: source_images folder not found: {folder}")
    spec = image_encoder.spec(device=compute.torch_device())

    def build(directory: UPath) -> tuple[str, dict]:
        if folder is None:
            (directory / "none.txt").write_text("the model's card names no source_images\n")
            return hashlib.sha256(NO_SAMPLE.encode()).hexdigest(), {"has_source": False}
        index = scan_image_folder(folder)
        writer = TokenWriterConfig(max_rows=config.max_rows, batch_size=config.batch_size, seed=config.seed,
                                   dtype="float32", min_classes=1)
        summary = write_dataset_tokens(index, load_image_encoder(spec), directory / TOKENS_DIR, writer)
        return summary.content_hash, {
            "has_source": True,
            "n_valid": summary.n_valid,
            "n_classes": summary.n_classes,
            "n_skipped": summary.n_skipped,
        }

    inputs = {}  # no sample: nothing to encode, so not even the encoder's weights need hashing
    if folder is not None:
        inputs = {"encoder": encoder_spec_fingerprint(spec), "images": image_folder_fingerprint(folder)}
    # one artifact per sample content (and encoder, config), shared by every model that names it
    shared = "no-sample" if folder is None else "sample-" + hash_parts(sorted(inputs.items()), config.model_dump())[:16]
    result = materialize_cached(
        store,
        asset="model_source_tokens",
        partition=shared,
        code_version=CODE_VERSION,
        config=config.model_dump(),
        inputs=inputs,
        build=build,
        log=context.log,
    )
    s = result.summary
    metadata = {**result.base_metadata(), "has_source_sample": s["has_source"], "shared_artifact": shared}
    if s["has_source"]:
        metadata |= {"source_folder": folder.name, "n_images": s["n_valid"], "n_classes": s["n_classes"],
                     "n_skipped_images": s["n_skipped"]}
    else:
        context.log.info(f"{entry.name}: no source_images in its card; its source similarity will be neutral")
    yield Output(result.ref, data_version=result.data_version, metadata=metadata)


def load_source_tokens(ref: ArtifactRef, store: ArtifactStore) -> DatasetTokens | None:
    """The model's source-sample tokens, or None when its card names no sample."""
    path = ref.directory(store) / TOKENS_DIR
    return read_dataset_tokens(path) if path.exists() else None


def load_source_descriptors(
    refs: dict[str, ArtifactRef], store: ArtifactStore, models: list[str]
) -> np.ndarray | None:
    """``(N, D)`` source descriptors of ``models`` (NaN rows: no sample; None if no model has one).

    Models sharing a sample share its artifact: each artifact is read once."""
    by_artifact: dict[tuple[str | None, str], np.ndarray | None] = {}
    descriptors = []
    for model in models:
        ref = refs.get(model)
        if ref is None:
            descriptors.append(None)
            continue
        key = (ref.partition, ref.cache_key)
        if key not in by_artifact:
            tokens = load_source_tokens(ref, store)
            by_artifact[key] = dataset_descriptor(tokens) if tokens is not None else None
        descriptors.append(by_artifact[key])
    known = [d for d in descriptors if d is not None]
    return stack_source_descriptors(descriptors, len(known[0])) if known else None
