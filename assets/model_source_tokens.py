"""Asset ``model_source_tokens``: image-encoder tokens of a sample of one model's pre-training data.

A model's card (sidecar or zoo-manifest entry) may name ``source_images``, an ImageFolder of
images like those it was trained on. They are encoded by the same image encoder as the dataset
tokens, so a target dataset can be compared with what each model has seen
(:mod:`ml_core.ranking.baselines`). A model without a sample gets an empty artifact that says so:
every model has a partition here, and its similarity is neutral downstream.

The artifact is keyed by the sample's content, not by the model: every model whose card names the
same images (a zoo of fine-tunes of one ImageNet backbone, the demo's four architectures per source
task) points at one artifact, encoded once.
"""

import hashlib

from dagster import AssetExecutionContext, asset
from upath import UPath

from assets.shared.artifacts import materialize_asset
from assets.shared.configs import dagster_config
from assets.shared.loaders import NO_SAMPLE_FILE, TOKENS_DIR
from assets.shared.partitions import models_partitions
from ml_core.artifacts import hash_parts
from ml_core.images import (
    EXECUTION_FIELDS,
    SOURCE_SAMPLE_TOKENS,
    encoder_spec_fingerprint,
    load_image_encoder,
    scan_image_folder,
    write_dataset_tokens,
)
from resources.artifact_store import ArtifactStore
from resources.compute import ComputeDevice
from resources.image_encoder import ImageEncoderResource
from resources.model_zoo import ModelZoo, ZooError

CODE_VERSION = "3"  # 2: one artifact per sample content, shared by the models naming it; 3: content fingerprints
NO_SAMPLE = "no source sample"
SourceTokensAssetConfig = dagster_config(SOURCE_SAMPLE_TOKENS, "SourceTokensAssetConfig")


@asset(
    partitions_def=models_partitions,
    code_version=CODE_VERSION,
    group_name="models",
    kinds={"pytorch", "zarr"},
    description="Image-encoder tokens of the sample of pre-training images a model's card names "
    "(source_images); empty, and neutral downstream, for a model without one.",
)
def model_source_tokens(
    context: AssetExecutionContext,
    config: SourceTokensAssetConfig,
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
            (directory / NO_SAMPLE_FILE).write_text("the model's card names no source_images\n")
            return hashlib.sha256(NO_SAMPLE.encode()).hexdigest(), {"has_source": False}
        summary = write_dataset_tokens(scan_image_folder(folder), load_image_encoder(spec), directory / TOKENS_DIR,
                                       config.to_ml())
        return summary.content_hash, {
            "has_source": True,
            "n_valid": summary.n_valid,
            "n_classes": summary.n_classes,
            "n_skipped": summary.n_skipped,
        }

    inputs = {}  # no sample: nothing to encode, so not even the encoder's weights need hashing
    if folder is not None:
        fingerprints = store.fingerprints
        inputs = {"encoder": encoder_spec_fingerprint(spec, fingerprints.file_sha256),
                  "images": fingerprints.folder(folder)}
    # one artifact per sample content (and encoder, config), shared by every model that names it
    key_config = config.model_dump(exclude=EXECUTION_FIELDS)  # how many decoders: not what the tokens are
    shared = "no-sample" if folder is None else "sample-" + hash_parts(sorted(inputs.items()), key_config)[:16]
    result = materialize_asset(context, store, config=key_config, inputs=inputs, build=build,
                               partition=shared)
    s = result.summary
    metadata = {"has_source_sample": s["has_source"], "shared_artifact": shared}
    if s["has_source"]:
        metadata |= {"source_folder": folder.name, "n_images": s["n_valid"], "n_classes": s["n_classes"],
                     "n_skipped_images": s["n_skipped"]}
    else:
        context.log.info(f"{entry.name}: no source_images in its card; its source similarity will be neutral")
    yield result.output(metadata)
