"""A probe-measured performance table: the STAND-IN scale's given table (not fine-tuning).

Each accuracy is a nearest-class-mean classifier on a model's frozen ``forward_features`` of the
target's train images, scored on its test images: cheap, deterministic, and enough to give the
pipeline a table to read as a user's own. The demo scales measure theirs by fine-tuning instead
(the ``transfer_performance`` asset).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ml_core.ground_truth import PerformanceRecord, to_model_input
from ml_core.weights import ModelCard


def nearest_class_mean_accuracy(
    train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor, test_labels: torch.Tensor
) -> float:
    """Top-1 accuracy of a nearest-class-mean classifier on frozen features.

    Features ``(N, F)`` are centred by the train mean and L2-normalised; each test row goes to the
    class whose mean train feature has the highest cosine similarity. Labels ``(N,)`` int.
    """
    centre = train_features.mean(0, keepdim=True)
    tr = F.normalize(train_features - centre, dim=1)
    te = F.normalize(test_features - centre, dim=1)
    classes = torch.unique(train_labels)
    means = F.normalize(torch.stack([tr[train_labels == c].mean(0) for c in classes]), dim=1)
    predicted = classes[(te @ means.T).argmax(1)]
    return int((predicted == test_labels).sum()) / len(test_labels)


def probe_accuracy(
    model: torch.nn.Module, card: ModelCard, splits: Mapping[str, tuple[np.ndarray, np.ndarray]]
) -> float:
    """Nearest-class-mean accuracy on ``splits["test"]`` of ``model.forward_features`` fitted on ``"train"``."""
    model.eval()
    with torch.inference_mode():
        features = {s: model.forward_features(to_model_input(splits[s][0], card)) for s in ("train", "test")}
    return nearest_class_mean_accuracy(
        features["train"], torch.from_numpy(splits["train"][1]), features["test"], torch.from_numpy(splits["test"][1])
    )


def probe_table(
    models: Mapping[str, tuple[torch.nn.Module, ModelCard]],
    datasets: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]],
) -> dict[str, list[dict[str, Any]]]:
    """``{dataset: [PerformanceRecord, ...]}`` (the JSON performance-table format) of every model on
    every dataset; ``datasets[name][split] = (images, labels)``."""
    return {
        dataset: [
            PerformanceRecord(
                model_name=name,
                model_type=card.architecture,
                accuracy=probe_accuracy(model, card, splits),
                trained_on_dataset=card.source_task,
            ).model_dump()
            for name, (model, card) in models.items()
        ]
        for dataset, splits in datasets.items()
    }
