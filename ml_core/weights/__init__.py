"""Model weights: checkpoints read safely, flattened into chunks, encoded into model embeddings.

Imports :mod:`ml_core.artifacts` and the shared trainer only.

* :mod:`~ml_core.weights.checkpoints`: tensor-by-tensor readers that never unpickle code;
* :mod:`~ml_core.weights.flatten` / :mod:`~ml_core.weights.parameters`: the whole network as
  ``(n_chunks, 8192)`` chunks (zarr), streamed, with a per-tensor index;
* :mod:`~ml_core.weights.weight_tokens`: rows of tensors as small tokens with positions, and the
  trivial descriptor (:func:`weight_statistics`) every embedding must beat;
* :mod:`~ml_core.weights.token_encoder`: ``WeightTokenEncoder``, a transformer over windows of weight
  tokens (masked reconstruction + contrastive views), the default embedder;
* :mod:`~ml_core.weights.autoencoder`: ``AutoEncoder`` 8192 -> 1024 -> 512 over chunks (the baseline);
* :mod:`~ml_core.weights.embedders`: one config that picks and trains either embedder;
* :mod:`~ml_core.weights.embeddings`: window / chunk codes pooled into a model's tokens;
* :mod:`~ml_core.weights.architectures`: the networks of the generated zoos (timm-style);
* :mod:`~ml_core.weights.cards`: the model card, one schema for every zoo model's sidecar;
* :mod:`~ml_core.weights.costs`: what a checkpoint costs to run (parameters, bytes, FLOPs, CPU latency).
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
    build_library_architecture,
    build_network,
    count_parameters,
)
from ml_core.weights.autoencoder import (
    AutoEncoder,
    AutoEncoderArtifact,
    AutoEncoderConfig,
    AutoEncoderTrainer,
    AutoEncoderTrainingConfig,
    ChunkNormalizer,
    Corpus,
    chunk_quotas,
    evaluate_reconstruction,
    reconstruction_loss,
    sample_chunks,
    split_models,
    train_autoencoder,
    with_corpus,
)
from ml_core.weights.corpus import CorpusError, discover_corpus, flatten_corpus
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
from ml_core.weights.costs import CostConfig, ModelCosts, describe_machine, machine_label, model_costs
from ml_core.weights.embedders import (
    WeightEmbedder,
    WeightEmbedderConfig,
    embedder_config,
    load_embedder,
    train_embedder,
)
from ml_core.weights.embeddings import EmbeddingConfig, ModelEmbedding, embed, embed_model, pool_codes
from ml_core.weights.flatten import CHUNK_SIZE, FlattenIndex, flatten_checkpoint, plan_flatten, unflatten
from ml_core.weights.token_encoder import (
    TokenEncoderArtifact,
    TokenEncoderConfig,
    TokenEncoderTrainingConfig,
    WeightTokenEncoder,
    train_token_encoder,
)
from ml_core.weights.weight_tokens import (
    POSITION_FEATURES,
    STATISTIC_FEATURES,
    WeightTokens,
    model_tokens,
    network_order,
    weight_statistics,
)
from ml_core.weights.parameters import (
    FlattenConfig,
    ModelParameters,
    ParametersSummary,
    read_model_parameters,
    write_model_parameters,
)

__all__ = [
    "POSITION_FEATURES",
    "STATISTIC_FEATURES",
    "TokenEncoderArtifact",
    "TokenEncoderConfig",
    "TokenEncoderTrainingConfig",
    "WeightEmbedder",
    "WeightEmbedderConfig",
    "WeightTokenEncoder",
    "WeightTokens",
    "embed",
    "embedder_config",
    "load_embedder",
    "model_tokens",
    "network_order",
    "train_embedder",
    "train_token_encoder",
    "weight_statistics",
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
    "Corpus",
    "CorpusError",
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
    "build_library_architecture",
    "build_network",
    "CostConfig",
    "ModelCosts",
    "describe_machine",
    "machine_label",
    "model_costs",
    "chunk_quotas",
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
    "with_corpus",
    "discover_corpus",
    "flatten_corpus",
    "write_model_parameters",
]
