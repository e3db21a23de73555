"""Transfer performance: how well one zoo model does on one labelled dataset, by a fixed protocol.

Two protocols (:class:`TransferProtocol`), both seeded and free of augmentation:

* ``finetune`` (the default, what the ground truth uses): a fresh linear head plus the model's
  LAST block (``tail_modules()`` of :mod:`ml_core.weights.architectures`) are trained with AdamW on
  the dataset's train split, everything before the last block frozen (BatchNorm statistics
  included); ``epochs`` passes over the train split, at least ``min_steps`` optimiser steps,
  batch ``batch_size``, constant learning rate. Since the frozen trunk sees each image once and
  no augmentation is used, its activations are computed once and the tail trains on them: the
  same result as running the whole network, at a fraction of the cost. Accuracy: top-1 on the
  test split.
* ``linear_probe``: the frozen network's pooled features, standardised with train statistics,
  and an L2-regularised multinomial logistic regression (scikit-learn, lbfgs, ``C=probe_c``).

Inputs: a checkpoint read through :func:`ml_core.weights.checkpoints.open_checkpoint` (never unpickled)
and its sidecar card (architecture, constructor kwargs, input size, pixel normalisation), an
ImageFolder dataset (:mod:`ml_core.images.folders`). Class indices follow the sorted class folders
of the train split; test images of other classes are an error.

:func:`assess_spread` decides whether a dataset's column of accuracies says anything: all models
at chance, all saturated, or all tied within the test split's sampling error make a
DEGENERATE target, which must not be used as ground truth.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import BaseModel, ConfigDict

from ml_core.artifacts import hash_parts
from ml_core.images import ImageFolderIndex, load_rgb_with_reason, scan_image_folder
from ml_core.weights import (
    CheckpointError,
    ModelCard,
    ModelCardError,
    UnknownArchitectureError,
    build_architecture,
    open_checkpoint,
)

logger = logging.getLogger(__name__)

TRANSFER_CODE_VERSION = "1"  # bump when a protocol's numbers would change


class TransferError(ValueError):
    """A model or dataset cannot be measured; the message names the file and the problem."""


@dataclass(frozen=True)
class TransferProtocol:
    """The fixed, seeded protocol that turns (model, dataset) into one accuracy.

    ``kind``: ``finetune`` (a fresh head + the last block) or ``linear_probe``. ``epochs`` (passes over
    the train split), ``min_steps`` (at least this many optimiser steps), ``lr`` (AdamW, constant),
    ``train_last_block`` (else the head only): finetune only. ``probe_c``: linear_probe only, the
    inverse L2 strength of the logistic regression.
    """

    kind: Literal["finetune", "linear_probe"] = "finetune"
    epochs: int = 15
    min_steps: int = 60
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    train_last_block: bool = True
    probe_c: float = 1.0
    seed: int = 0
    train_split: str = "train"
    test_split: str = "test"

    def __post_init__(self) -> None:
        if self.kind not in ("finetune", "linear_probe"):
            raise ValueError(f"TransferProtocol.kind must be 'finetune' or 'linear_probe', got {self.kind!r}")
        problems = [f"{name}={getattr(self, name)}" for name, ok in (
            ("epochs", self.epochs >= 1), ("min_steps", self.min_steps >= 0), ("batch_size", self.batch_size >= 1),
            ("lr", self.lr > 0), ("weight_decay", self.weight_decay >= 0), ("probe_c", self.probe_c > 0),
        ) if not ok]
        if problems:
            raise ValueError(f"TransferProtocol: out of range: {', '.join(problems)}")

    def fingerprint(self) -> str:
        return hash_parts("transfer_protocol", TRANSFER_CODE_VERSION, asdict(self))


@dataclass(frozen=True)
class SpreadConfig:
    """When a dataset's column of accuracies is degenerate (see :func:`assess_spread`)."""

    z: float = 2.5
    min_tolerance: float = 0.02
    saturation: float = 0.98


@dataclass(frozen=True)
class MeasurementConfig:
    """How ``transfer_performance`` measures a dataset's column: the protocol, and the spread test."""

    protocol: TransferProtocol = field(default_factory=TransferProtocol)
    spread: SpreadConfig = field(default_factory=SpreadConfig)


def transfer_card(metadata: Mapping[str, Any] | ModelCard, path: Path) -> ModelCard:
    """The model card of ``path`` (its sidecar metadata, or a card) checked for what the protocol
    needs: a network it can rebuild (``architecture``, ``num_classes``). :class:`TransferError` names
    the file otherwise."""
    if isinstance(metadata, ModelCard):
        card = metadata
    else:
        if not metadata.get("architecture"):
            raise TransferError(
                f"{path}: no sidecar with an 'architecture' (cannot rebuild the network to fine-tune it)"
            )
        try:
            card = ModelCard.from_metadata(dict(metadata), path)
        except ModelCardError as err:
            raise TransferError(f"{path}: sidecar unusable for transfer: {err}") from err
    if not card.architecture:
        raise TransferError(f"{path}: no sidecar with an 'architecture' (cannot rebuild the network to fine-tune it)")
    if card.num_classes is None:
        raise TransferError(f"{path}: sidecar unusable for transfer: it names no num_classes")
    return card


@dataclass(frozen=True)
class LabelledImages:
    """Decoded RGB images (uint8 ``(H, W, 3)`` each) with labels ``(N,)`` and the class names; ``ids``: each
    image's path relative to the dataset folder (None when not from a folder), ``skipped``: the images that
    did not decode, as ``(path, reason)``."""

    images: list[np.ndarray]
    labels: np.ndarray
    classes: list[str]
    ids: list[str] | None = None
    skipped: tuple[tuple[str, str], ...] = ()

    def __len__(self) -> int:
        return len(self.images)


@dataclass(frozen=True)
class TransferResult:
    """One measured cell. ``accuracy``: top-1 on the test split (fraction)."""

    accuracy: float
    train_accuracy: float
    n_train: int
    n_test: int
    n_classes: int
    chance: float
    steps: int
    seconds: float
    protocol: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    """Run torch on ``n`` intra-op threads inside the block. The zoo's nets are tiny: one thread is
    faster than two on a busy 2-core machine (measured: 0.5 s vs up to 10 s per cell) and keeps
    the numbers independent of the core count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# ----------------------------------------------------------------------------- inputs


def load_split(dataset_dir: Path, split: str, classes: Sequence[str] | None = None) -> LabelledImages:
    """Decode every image of ``<dataset_dir>/<split>``; ``classes`` fixes the label order
    (default: this split's sorted class folders). Unreadable images are skipped (logged)."""
    return load_index(scan_image_folder(Path(dataset_dir), split), classes)


def load_index(index: ImageFolderIndex, classes: Sequence[str] | None = None) -> LabelledImages:
    """Decode every image of an indexed split (see :func:`load_split`); ``classes`` fixes the label order."""
    where = index.dataset_dir / index.split
    classes = list(classes) if classes is not None else list(index.classes)
    unknown = sorted(set(index.classes) - set(classes))
    if unknown:
        raise TransferError(f"{where}: classes {unknown} are not in the train split's {classes}")
    images, labels, ids, skipped = [], [], [], []
    for name, files in zip(index.classes, index.files, strict=True):
        for path in files:
            image, reason = load_rgb_with_reason(path)
            if image is None:
                logger.warning("skipping unreadable image %s: %s", path, reason)
                skipped.append((index.relative(path), str(reason)))
                continue
            images.append(np.asarray(image, dtype=np.uint8))
            labels.append(classes.index(name))
            ids.append(index.relative(path))
    if not images:
        raise TransferError(f"{where}: no readable image")
    return LabelledImages(images, np.asarray(labels, dtype=np.int64), classes, ids, tuple(skipped))


def to_model_input(images: Sequence[np.ndarray], card: ModelCard) -> torch.Tensor:
    """uint8 images -> float32 ``(N, 3, S, S)``: resized to ``card.input_size`` (bilinear, whole
    image, no crop), scaled to [0, 1], normalised with the card's mean / std."""
    size = card.input_size
    arrays = [img if img.shape[:2] == (size, size) else np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BILINEAR)) for img in images]
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(card.pixel_mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(card.pixel_std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - mean) / std


def load_zoo_model(checkpoint: Path, card: ModelCard, *, architecture: str | None = None) -> torch.nn.Module:
    """Rebuild the card's architecture and load the checkpoint into it strictly (eval mode)."""
    try:
        model = build_architecture(card.architecture, num_classes=card.num_classes, **card.arch_kwargs)
    except (UnknownArchitectureError, TypeError, ValueError) as err:
        raise TransferError(f"{checkpoint}: cannot rebuild architecture {card.architecture!r}: {err}") from err
    try:
        with open_checkpoint(checkpoint, architecture=architecture) as reader:
            state = {info.name: reader.get(info.name) for info in reader.tensor_infos()}
        model.load_state_dict(state, strict=True)
    except (CheckpointError, RuntimeError) as err:
        raise TransferError(f"{checkpoint}: weights do not fit {card.architecture!r}: {str(err).splitlines()[0]}") from err
    return model.eval()


def cell_key(model_fingerprint: str, card: ModelCard, dataset_fingerprint: str, protocol: TransferProtocol) -> str:
    """The cache key of one (model, dataset, protocol) cell."""
    return hash_parts("transfer_cell", model_fingerprint, card.transfer_fingerprint(), dataset_fingerprint, protocol.fingerprint())


# ----------------------------------------------------------------------------- protocols


def _batched(fn, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([fn(x[i : i + batch]) for i in range(0, len(x), batch)])


def _seed(protocol: TransferProtocol, *parts: Any) -> int:
    return int(hash_parts("transfer_seed", protocol.seed, *parts)[:15], 16)


def _finetune(model: torch.nn.Module, x_tr: torch.Tensor, y_tr: torch.Tensor, x_te: torch.Tensor, y_te: torch.Tensor,
              n_classes: int, protocol: TransferProtocol) -> tuple[float, float, int]:
    model.eval()
    if protocol.train_last_block:
        trunk, tail_modules = model.forward_trunk, list(model.tail_modules())
        tail = model.forward_tail
    else:
        trunk, tail_modules, tail = model.forward_features, [], (lambda h: h)
    h_tr, h_te = _batched(trunk, x_tr), _batched(trunk, x_te)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seed(protocol, "head"))
        model.reset_classifier(n_classes)
        head = model.get_classifier()
        params = [p for m in (*tail_modules, head) for p in m.parameters()]
        for p in model.parameters():
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        optimizer = torch.optim.AdamW(params, lr=protocol.lr, weight_decay=protocol.weight_decay)
        generator = torch.Generator().manual_seed(_seed(protocol, "order"))
        per_epoch = math.ceil(len(h_tr) / protocol.batch_size)
        steps = max(protocol.epochs * per_epoch, protocol.min_steps)
        model.train()
        done = 0
        while done < steps:
            order = torch.randperm(len(h_tr), generator=generator)
            for start in range(0, len(h_tr), protocol.batch_size):
                idx = order[start : start + protocol.batch_size]
                if len(idx) < 2 and len(h_tr) >= 2:  # BatchNorm needs two samples; drop a last single one
                    continue
                loss = F.cross_entropy(model.forward_head(tail(h_tr[idx])), y_tr[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                done += 1
                if done >= steps:
                    break
        model.eval()
    with torch.no_grad():
        train_acc = float((_batched(lambda h: model.forward_head(tail(h)), h_tr).argmax(1) == y_tr).float().mean())
        test_acc = float((_batched(lambda h: model.forward_head(tail(h)), h_te).argmax(1) == y_te).float().mean())
    return test_acc, train_acc, steps


def _linear_probe(model: torch.nn.Module, x_tr: torch.Tensor, y_tr: torch.Tensor, x_te: torch.Tensor, y_te: torch.Tensor,
                  protocol: TransferProtocol) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression

    model.eval()
    f_tr = _batched(model.forward_features, x_tr).double().numpy()
    f_te = _batched(model.forward_features, x_te).double().numpy()
    mean, std = f_tr.mean(0), f_tr.std(0) + 1e-6
    f_tr, f_te = (f_tr - mean) / std, (f_te - mean) / std
    if len(np.unique(y_tr.numpy())) < 2:
        raise TransferError("linear probe needs at least two classes in the train split")
    clf = LogisticRegression(C=protocol.probe_c, max_iter=2000)
    clf.fit(f_tr, y_tr.numpy())
    return float(clf.score(f_te, y_te.numpy())), float(clf.score(f_tr, y_tr.numpy()))


def measure_transfer(
    model: torch.nn.Module,
    card: ModelCard,
    train: LabelledImages,
    test: LabelledImages,
    protocol: TransferProtocol,
) -> TransferResult:
    """Accuracy of ``model`` on ``test`` after the protocol on ``train`` (the model is modified)."""
    start = time.perf_counter()
    if train.classes != test.classes:
        raise TransferError(f"train and test class lists differ: {train.classes} vs {test.classes}")
    n_classes = len(train.classes)
    x_tr, x_te = to_model_input(train.images, card), to_model_input(test.images, card)
    y_tr, y_te = torch.from_numpy(train.labels), torch.from_numpy(test.labels)
    if protocol.kind == "finetune":
        accuracy, train_accuracy, steps = _finetune(model, x_tr, y_tr, x_te, y_te, n_classes, protocol)
    else:
        accuracy, train_accuracy = _linear_probe(model, x_tr, y_tr, x_te, y_te, protocol)
        steps = 0
    counts = np.bincount(test.labels, minlength=n_classes)
    return TransferResult(
        accuracy=accuracy,
        train_accuracy=train_accuracy,
        n_train=len(train),
        n_test=len(test),
        n_classes=n_classes,
        chance=float(counts.max() / counts.sum()),  # majority-class rate (1 / classes when balanced)
        steps=steps,
        seconds=time.perf_counter() - start,
        protocol=protocol.kind,
    )


# ----------------------------------------------------------------------------- degenerate targets


class SpreadReport(BaseModel):
    """Whether a dataset's accuracies across the zoo carry ranking information.

    ``degenerate`` when the best model is within ``tolerance`` of chance (``at_chance``), the worst
    is at or above ``saturation`` (``saturated``), or best - worst is within ``tolerance``
    (``tied``). ``tolerance`` = max(``min_tolerance``, ``z`` x the binomial standard error of an
    accuracy at the column's mean on ``n_test`` images): differences that small are test noise.
    """

    model_config = ConfigDict(extra="forbid")

    degenerate: bool
    reason: str | None
    n_models: int
    best: float
    worst: float
    mean: float
    spread: float
    chance: float
    tolerance: float


def assess_spread(
    accuracies: Sequence[float],
    *,
    chance: float,
    n_test: int,
    z: float = 2.5,
    min_tolerance: float = 0.02,
    saturation: float = 0.98,
) -> SpreadReport:
    """Decide whether a column of accuracies (one per model) is degenerate. See :class:`SpreadReport`."""
    values = np.asarray([a for a in accuracies if a is not None and not math.isnan(a)], dtype=np.float64)
    if len(values) == 0:
        return SpreadReport(degenerate=True, reason="no measured model", n_models=0, best=math.nan, worst=math.nan,
                            mean=math.nan, spread=0.0, chance=chance, tolerance=math.nan)
    best, worst, mean = float(values.max()), float(values.min()), float(values.mean())
    se = math.sqrt(max(mean * (1 - mean), 1e-4) / max(n_test, 1))
    tolerance = max(min_tolerance, z * se)
    reason = None
    if len(values) < 2:
        reason = "fewer than two models measured"
    elif best <= chance + tolerance:
        reason = f"at chance: best {best:.3f} <= chance {chance:.3f} + {tolerance:.3f}"
    elif worst >= saturation:
        reason = f"saturated: worst {worst:.3f} >= {saturation:.2f}"
    elif best - worst <= tolerance:
        reason = f"tied: best - worst = {best - worst:.3f} <= {tolerance:.3f} (test noise)"
    return SpreadReport(degenerate=reason is not None, reason=reason, n_models=len(values), best=best, worst=worst,
                        mean=mean, spread=best - worst, chance=chance, tolerance=tolerance)


# ----------------------------------------------------------------------------- table-level spread


class TableSpread(BaseModel):
    """How much model choice matters in a (dataset x model) accuracy table.

    ``n_distinct_best``: how many different models are best on some dataset; ``overall_best``:
    the model with the highest mean accuracy; ``regret_of_overall_best_mean`` / ``_max``: accuracy
    points (fractions) lost on average / at worst by always picking it instead of each dataset's best.
    """

    model_config = ConfigDict(extra="forbid")

    n_datasets: int
    n_models: int
    n_distinct_best: int
    best_models: dict[str, str]
    overall_best: str
    regret_of_overall_best_mean: float
    regret_of_overall_best_max: float


def table_spread(accuracy: Mapping[str, Mapping[str, float]]) -> TableSpread:
    """:class:`TableSpread` of ``{dataset: {model: accuracy}}`` (models missing somewhere are ignored)."""
    datasets = sorted(accuracy)
    if not datasets:
        raise TransferError("table_spread: empty table")
    models = sorted(set.intersection(*(set(accuracy[d]) for d in datasets)))
    if not models:
        raise TransferError("table_spread: no model is measured on every dataset")
    matrix = np.asarray([[accuracy[d][m] for m in models] for d in datasets], dtype=np.float64)
    overall = int(np.argmax(matrix.mean(0)))
    regret = matrix.max(1) - matrix[:, overall]
    best = {d: models[int(np.argmax(row))] for d, row in zip(datasets, matrix, strict=True)}
    return TableSpread(
        n_datasets=len(datasets),
        n_models=len(models),
        n_distinct_best=len(set(best.values())),
        best_models=best,
        overall_best=models[overall],
        regret_of_overall_best_mean=float(regret.mean()),
        regret_of_overall_best_max=float(regret.max()),
    )
