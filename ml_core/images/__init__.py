"""Images: dataset folders, the image encoder, and dataset tokens (class-balanced feature rows).

Imports :mod:`ml_core.artifacts` and :mod:`ml_core.weights` (the EfficientNet-Lite0 network and the
safe checkpoint reader) only.

* :mod:`~ml_core.images.folders`: ImageFolder scanning and decoding that never raises for one file;
* :mod:`~ml_core.images.encoders`: open_clip or EfficientNet-Lite0, with the eval transform;
* :mod:`~ml_core.images.tokens`: features streamed into a sharded zarr group, and read back.
"""

from ml_core.images.encoders import (
    EFFICIENTNET_NOTE,
    ENCODER_KINDS,
    RANDOM_WEIGHTS_NOTE,
    ImageEncoderError,
    ImageEncoderSpec,
    LoadedImageEncoder,
    efficientnet_lite0_weights_file,
    encoder_spec_fingerprint,
    load_image_encoder,
    write_random_open_clip_standin,
)
from ml_core.images.folders import (
    IMAGE_EXTENSIONS,
    MAX_ASPECT_RATIO,
    MAX_IMAGE_PIXELS,
    UNLABELLED,
    ImageFolderError,
    ImageFolderIndex,
    load_rgb,
    load_rgb_with_reason,
    scan_any_image_folder,
    scan_image_folder,
    size_problem,
)
from ml_core.images.tokens import (
    EXECUTION_FIELDS,
    SOURCE_SAMPLE_TOKENS,
    TOKENS_FORMAT,
    DatasetTokens,
    DatasetTokensError,
    ImageEncoderLike,
    SkippedImage,
    TokensSummary,
    TokenWriterConfig,
    dataset_descriptor,
    plan_rows,
    read_dataset_tokens,
    write_dataset_tokens,
)

__all__ = [
    "EXECUTION_FIELDS",
    "EFFICIENTNET_NOTE",
    "ENCODER_KINDS",
    "IMAGE_EXTENSIONS",
    "MAX_ASPECT_RATIO",
    "MAX_IMAGE_PIXELS",
    "UNLABELLED",
    "RANDOM_WEIGHTS_NOTE",
    "SOURCE_SAMPLE_TOKENS",
    "TOKENS_FORMAT",
    "DatasetTokens",
    "DatasetTokensError",
    "ImageEncoderError",
    "ImageEncoderLike",
    "ImageEncoderSpec",
    "ImageFolderError",
    "ImageFolderIndex",
    "LoadedImageEncoder",
    "SkippedImage",
    "TokenWriterConfig",
    "TokensSummary",
    "dataset_descriptor",
    "efficientnet_lite0_weights_file",
    "encoder_spec_fingerprint",
    "load_image_encoder",
    "load_rgb",
    "load_rgb_with_reason",
    "plan_rows",
    "read_dataset_tokens",
    "scan_any_image_folder",
    "scan_image_folder",
    "size_problem",
    "write_dataset_tokens",
    "write_random_open_clip_standin",
]
