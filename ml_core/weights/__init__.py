"""Model weights: checkpoints read safely, flattened into chunks, encoded into model embeddings.

Imports :mod:`ml_core.artifacts` and the shared trainer only.

* :mod:`~ml_core.weights.checkpoints`: tensor-by-tensor readers that never unpickle code;
* :mod:`~ml_core.weights.flatten` / :mod:`~ml_core.weights.parameters`: the whole network as
  ``(n_chunks, 8192)`` chunks (zarr), streamed, with a per-tensor index;
* :mod:`~ml_core.weights.autoencoder`: ``AutoEncoder`` 8192 -> 1024 -> 512 over chunks;
* :mod:`~ml_core.weights.embeddings`: chunk codes pooled into a model's tokens;
* :mod:`~ml_core.weights.architectures`: the networks of the generated zoos (timm-style);
* :mod:`~ml_core.weights.cards`: the model card, one schema for every zoo model's sidecar.
"""

from ml_core.weights.architectures import (
    ARCHITECTURES,
    SMALL_ARCHITECTURES,
    DepthwiseNet,
    EfficientNetLite0,
    SmallCNN,
    TinyResNet,
    TinyViT,
    UnknownArchitectureError,
    build_architecture,
    count_parameters,
)
from ml_core.weights.autoencoder import (
    AutoEncoder,
    AutoEncoderArtifact,
    AutoEncoderConfig,
    AutoEncoderTrainer,
    AutoEncoderTrainingConfig,
    ChunkNormalizer,
    evaluate_reconstruction,
    reconstruction_loss,
    sample_chunks,
    split_models,
    train_autoencoder,
)
from ml_core.weights.cards import TRANSFER_FIELDS, ModelCard, ModelCardError, library_architecture
from ml_core.weights.checkpoints import (
    CHECKPOINT_SUFFIXES,
    PICKLE_SUFFIXES,
    SAFETENSORS_SUFFIXES,
    CheckpointError,
    CheckpointReader,
    SafetensorsReader,
    StateDictReader,
    TensorInfo,
    build_architecture_on_meta,
    extract_state_dict,
    open_checkpoint,
)
from ml_core.weights.embeddings import EmbeddingConfig, ModelEmbedding, embed_model, pool_codes
from ml_core.weights.flatten import CHUNK_SIZE, FlattenIndex, flatten_checkpoint, plan_flatten, unflatten
from ml_core.weights.parameters import (
    FlattenConfig,
    ModelParameters,
    ParametersSummary,
    read_model_parameters,
    write_model_parameters,
)

__all__ = [
    "ARCHITECTURES",
    "CHECKPOINT_SUFFIXES",
    "CHUNK_SIZE",
    "TRANSFER_FIELDS",
    "PICKLE_SUFFIXES",
    "SAFETENSORS_SUFFIXES",
    "SMALL_ARCHITECTURES",
    "AutoEncoder",
    "AutoEncoderArtifact",
    "AutoEncoderConfig",
    "AutoEncoderTrainer",
    "AutoEncoderTrainingConfig",
    "CheckpointError",
    "CheckpointReader",
    "ChunkNormalizer",
    "DepthwiseNet",
    "EmbeddingConfig",
    "EfficientNetLite0",
    "FlattenConfig",
    "FlattenIndex",
    "ModelCard",
    "ModelCardError",
    "ModelEmbedding",
    "ModelParameters",
    "ParametersSummary",
    "SafetensorsReader",
    "SmallCNN",
    "StateDictReader",
    "TensorInfo",
    "TinyResNet",
    "TinyViT",
    "UnknownArchitectureError",
    "build_architecture",
    "build_architecture_on_meta",
    "count_parameters",
    "embed_model",
    "evaluate_reconstruction",
    "extract_state_dict",
    "flatten_checkpoint",
    "library_architecture",
    "open_checkpoint",
    "plan_flatten",
    "pool_codes",
    "read_model_parameters",
    "reconstruction_loss",
    "sample_chunks",
    "split_models",
    "train_autoencoder",
    "unflatten",
    "write_model_parameters",
]
