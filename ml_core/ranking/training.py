"""Train, evaluate, save and apply the ranking transformer.

Training uses the ``train`` datasets only; ``val`` datasets drive early stopping; ``test``
datasets are only evaluated, after training. Model-token standardisation is fitted on the
models with a training result only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ml_core.artifacts import as_upath, read_json, write_json
from ml_core.configs import config_from_dict, config_to_dict
from ml_core.images import DatasetTokens, dataset_descriptor
from ml_core.metrics import mean_report, ranking_report
from ml_core.ranking.baselines import data_free_prior
from ml_core.ranking.data import (
    ModelTokenNormalizer,
    RankingCorpus,
    TokenMode,
    build_ranking_loader,
    dataset_token_set,
)
from ml_core.ranking.features import BaselineReference
from ml_core.ranking.losses import TemperatureSchedule, list_mle_loss, pairwise_logistic_loss
from ml_core.ranking.models import RankerConfig, RankingCrossAttentionTransformer
from ml_core.ranking.splits import assign_dataset_splits
from ml_core.trainer import BaseTrainer, TrainerConfig, TrainingHistory, load_weights, save_weights

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "ranker.safetensors"
CONFIG_FILE = "ranker.json"


@dataclass(frozen=True)
class RankerTrainingConfig:
    """How a ranker is trained: the config of the model it builds (``model``), the loss, the lists it
    sees, the baseline inputs' neighbours, the loop (``trainer``). Saved whole with the artifact."""

    model: RankerConfig = field(default_factory=RankerConfig)
    loss: Literal["listmle", "pairwise"] = "listmle"
    temperature_start: float = 1.0
    temperature_end: float = 1.0
    token_mode: TokenMode = "rows"
    max_rows: int = 8
    batch_size: int = 4
    knn_k: int = 3  # nearest-dataset input: neighbours and softmax temperature
    knn_temperature: float = 0.05
    model_dropout: float = 0.0  # augmentation: hide this fraction of models from each training list
    history_dropout: float = 0.0  # augmentation: the chance a training list's models look new (no own history)
    task_share: float = 0.5  # with sampled tasks in the corpus (split "task"): their share of each epoch's lists
    trainer: TrainerConfig = field(
        default_factory=lambda: TrainerConfig(
            epochs=60, lr=3e-4, weight_decay=1e-2, early_stopping_patience=15, scheduler="none"
        )
    )
    seed: int = 0

    def with_seed(self, seed: int) -> RankerTrainingConfig:
        """The same config with ``seed`` for the training and its loop."""
        return replace(self, seed=seed, trainer=replace(self.trainer, seed=seed))


def product_ranker() -> RankerTrainingConfig:
    """The product's ranker (the ``ranking_transformer`` asset's default): ``linear``, a learned weighting
    of the baselines' scores (prior, nearest-dataset, source similarity, weight neighbours) started at
    their plain sum,
    pairwise loss. On the demo world's leave-family-out validation folds it is among the two best
    variants (README, "Ranking quality"); on new models, which have no past results, validation
    prefers the seed transformer."""
    return RankerTrainingConfig(
        model=RankerConfig(architecture="linear", baseline_features=True, residual_init=True),
        loss="pairwise",
        token_mode="class_means",
        model_dropout=0.2,
        trainer=TrainerConfig(epochs=40, lr=0.05, weight_decay=1e-2, early_stopping_patience=10, scheduler="none"),
    )


@dataclass(frozen=True)
class RankerFitConfig:
    """How the product's ranker is fitted on the ground truth: its training config and the seeded split
    of the labelled datasets by family (``val`` for early stopping, ``test`` held out). ``seed`` seeds
    the split and the training."""

    training: RankerTrainingConfig = field(default_factory=product_ranker)
    val_fraction: float = 0.25
    test_fraction: float = 0.25
    seed: int = 0


def _score_batch(model: RankingCrossAttentionTransformer, batch: dict[str, Any]) -> torch.Tensor:
    return model(
        batch["dataset_tokens"],
        batch["model_tokens"],
        batch["dataset_mask"],
        batch["model_mask"],
        batch.get("model_features"),
    )


class RankerTrainer(BaseTrainer):
    """Batches from :func:`build_ranking_loader`; listwise (or pairwise) loss."""

    model: RankingCrossAttentionTransformer

    def __init__(
        self,
        model: RankingCrossAttentionTransformer,
        config: RankerTrainingConfig,
        out_dir: Path | None,
        steps_per_epoch: int = 1,
    ):
        super().__init__(model, config.trainer, out_dir)
        self.training_config = config
        total_steps = max(config.trainer.epochs, 1) * max(steps_per_epoch, 1)
        self.temperature = TemperatureSchedule(config.temperature_start, config.temperature_end, total_steps)

    def _forward_batch(self, batch: dict[str, Any]) -> torch.Tensor:
        scores = _score_batch(self.model, batch)
        if self.training_config.loss == "pairwise":
            loss = pairwise_logistic_loss(scores, batch["true_scores"], batch["model_mask"])
        else:
            loss = list_mle_loss(scores, batch["true_scores"], batch["model_mask"], self.temperature.value)
        self._last_batch_metrics = {"temperature": self.temperature.value}
        return loss

    def compute_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        return self._forward_batch(batch)

    def on_train_step(self) -> None:
        self.temperature.step()

    def validation_metrics(self, val_loader: Any) -> dict[str, float]:
        reports = []
        for batch in val_loader:
            scores = _score_batch(self.model, batch)
            for j in range(batch["batch_size"]):
                acc = batch["true_accuracy"][j].numpy()
                if np.sum(~np.isnan(acc)) >= 2:
                    reports.append(ranking_report(acc, scores[j].detach().numpy()))
        if not reports:
            return {}
        summary = mean_report(reports)
        return {k.removesuffix("_mean"): v for k, v in summary.items() if k.endswith("_mean")}


@dataclass
class RankerArtifact:
    """A trained ranker plus what it needs to score a new dataset."""

    model: RankingCrossAttentionTransformer
    training: RankerTrainingConfig
    model_normalizer: ModelTokenNormalizer
    info: dict[str, Any]
    reference: BaselineReference | None = None  # training datasets, for the baseline features

    def score(
        self,
        tokens: DatasetTokens,
        model_tokens: np.ndarray,
        model_names: Sequence[str] | None = None,
        model_sources: np.ndarray | None = None,
    ) -> np.ndarray:
        """Scores ``(N,)`` (higher = better) of ``model_tokens (N, Dm)`` for one dataset.

        ``model_names`` are needed when the ranker uses baseline features (to find each model's
        past results); a model without any gets the neutral feature value. ``model_sources (N, Dd)``
        are the models' source-sample descriptors (NaN rows: none; ``None``: nobody has one).
        """
        seq, mask = dataset_token_set(tokens, self.training.token_mode, self.training.max_rows, None)
        features = None
        if self.reference is not None:
            if model_names is None:
                raise ValueError("this ranker uses baseline features: pass model_names")
            features = torch.from_numpy(
                self.reference.features(dataset_descriptor(tokens), model_names, model_sources=model_sources,
                                        model_tokens=model_tokens)
            )[None]
        self.model.eval()
        linear = self.training.model.architecture == "linear"  # it reads the features only, never the tokens
        with torch.inference_mode():
            scores = self.model(
                torch.from_numpy(seq)[None],
                torch.zeros(1, len(model_tokens), 0) if linear else torch.from_numpy(self.model_normalizer.apply(model_tokens))[None],
                torch.from_numpy(mask)[None],
                None,
                features,
            )
        return scores[0].numpy().astype(np.float64)

    def history(self, model_names: Sequence[str]) -> np.ndarray | None:
        """The training datasets' accuracies ``(T, len(model_names))`` (NaN for a model without a
        result there, e.g. one added after training), or None if this ranker keeps no reference."""
        if self.reference is None:
            return None
        index = {m: j for j, m in enumerate(self.reference.model_names)}
        out = np.full((len(self.reference.dataset_names), len(model_names)), np.nan)
        for i, name in enumerate(model_names):
            if name in index:
                out[:, i] = self.reference.accuracy[:, index[name]]
        return out

    def save(self, directory: Any) -> None:
        directory = as_upath(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_weights(self.model, directory / WEIGHTS_FILE)
        write_json(
            directory / CONFIG_FILE,
            {
                "training": config_to_dict(self.training),  # holds the model's config: the one that built it
                "model_normalizer": self.model_normalizer.to_dict(),
                "reference": self.reference.to_dict() if self.reference is not None else None,
                "info": self.info,
            },
        )

    @classmethod
    def load(cls, directory: Any) -> RankerArtifact:
        directory = as_upath(directory)
        meta = read_json(directory / CONFIG_FILE)
        if "ranker" in meta:
            raise ValueError(f"{directory}: a ranker saved by an older version; re-materialize ranking_transformer")
        training = config_from_dict(RankerTrainingConfig, meta["training"])
        model = RankingCrossAttentionTransformer(training.model)
        load_weights(model, directory / WEIGHTS_FILE)
        return cls(
            model=model,
            training=training,
            model_normalizer=ModelTokenNormalizer.from_dict(meta["model_normalizer"]),
            info=meta.get("info", {}),
            reference=BaselineReference.from_dict(meta["reference"]) if meta.get("reference") else None,
        )


def evaluate_rankers(
    corpus: RankingCorpus, artifact: RankerArtifact, splits: tuple[str, ...] = ("train", "val", "test")
) -> dict[str, Any]:
    """Per-dataset ranking reports of the learned ranker and the data-free prior.

    The prior is fitted on the training datasets only. Returns ``{"per_dataset": [...],
    "summary": {split: {method: mean/std report}}}``.
    """
    train_acc = corpus.accuracy_of(corpus.datasets_in(("train",)))
    prior = data_free_prior(train_acc) if len(train_acc) else np.zeros(len(corpus.model_names))
    rows: list[dict[str, Any]] = []
    for name in corpus.dataset_names:
        split = corpus.splits.get(name, "train")
        if split not in splits:
            continue
        acc = corpus.accuracy_of([name])[0]
        if np.sum(~np.isnan(acc)) < 2:
            continue
        learned = artifact.score(corpus.dataset_tokens[name], corpus.model_tokens, corpus.model_names,
                                 corpus.model_sources)
        for method, scores in (("ranker", learned), ("prior", prior)):
            rows.append({"dataset": name, "split": split, "method": method, **ranking_report(acc, scores)})
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for split in splits:
        for method in ("ranker", "prior"):
            reports = [
                {k: v for k, v in r.items() if isinstance(v, float)}
                for r in rows
                if r["split"] == split and r["method"] == method
            ]
            if reports:
                summary.setdefault(split, {})[method] = mean_report(reports)
    return {"per_dataset": rows, "summary": summary}


def baseline_reference(
    corpus: RankingCorpus, families: Mapping[str, str], config: RankerTrainingConfig
) -> BaselineReference:
    """The training datasets' accuracies and descriptors, for the baseline features."""
    train_names = corpus.datasets_in(("train",))
    return BaselineReference(
        dataset_names=train_names,
        model_names=list(corpus.model_names),
        accuracy=corpus.accuracy_of(train_names),
        descriptors=np.stack([dataset_descriptor(corpus.dataset_tokens[d]) for d in train_names]),
        families={d: families.get(d, d) for d in train_names},
        k=config.knn_k,
        temperature=config.knn_temperature,
        model_tokens=np.asarray(corpus.model_tokens, dtype=np.float64),
    )


def with_baseline_features(
    corpus: RankingCorpus, reference: BaselineReference, families: Mapping[str, str]
) -> RankingCorpus:
    """The corpus with per-dataset baseline features; a training dataset's own family is left out
    of its reference, so that it looks like a held-out dataset (and a sampled task's, the families of
    every dataset it was drawn from)."""
    features = {}
    for name in corpus.dataset_names:
        split = corpus.splits.get(name, "train")
        own: str | set[str] | None = families.get(name, name) if split == "train" else None
        if split == "task":
            own = {families.get(d, d) for d in corpus.task_sources.get(name, ())}
        features[name] = reference.features(
            dataset_descriptor(corpus.dataset_tokens[name]), corpus.model_names, own, corpus.model_sources,
            corpus.model_tokens,
        )
    return replace(corpus, model_features=features)


def train_ranker(
    corpus: RankingCorpus,
    config: RankerTrainingConfig,
    out_dir: Path | None = None,
    families: Mapping[str, str] | None = None,
) -> tuple[RankerArtifact, TrainingHistory]:
    """Fit the ranker on the corpus's ``train`` datasets, early-stopping on ``val`` when present.

    Lists of split ``task`` (sampled tasks with proxy labels, ``corpus.task_sources``) join the training
    lists, ``config.task_share`` of each epoch; they never enter the baseline reference or the model-token
    standardisation (both read the real ``train`` datasets only).

    ``families`` (dataset -> family) matters only with ``config.model.baseline_features``. The returned
    artifact's ``training`` is the config that built and trained it, token widths included.
    """
    train_names = corpus.datasets_in(("train",))
    if not train_names:
        raise ValueError("no training datasets with ground truth: cannot train the ranker")
    reference = None
    if config.model.baseline_features:
        reference = baseline_reference(corpus, families or {}, config)
        corpus = with_baseline_features(corpus, reference, families or {})
    seen = ~np.all(np.isnan(corpus.accuracy_of(train_names)), axis=0)
    normalizer = ModelTokenNormalizer.fit(corpus.model_tokens[seen])
    torch.manual_seed(config.seed)
    ranker_config = replace(
        config.model,
        dataset_token_dim=int(next(iter(corpus.dataset_tokens.values())).features.shape[-1]),
        model_token_dim=int(corpus.model_tokens.shape[1]),
        residual_init=config.model.residual_init and config.model.baseline_features,
    )
    config = replace(config, model=ranker_config)
    model = RankingCrossAttentionTransformer(ranker_config)
    common = {"model_normalizer": normalizer, "token_mode": config.token_mode, "max_rows": config.max_rows}
    train_loader = build_ranking_loader(
        corpus,
        splits=("train",),
        tasks=corpus.datasets_in(("task",)),
        task_share=config.task_share,
        batch_size=config.batch_size,
        shuffle=True,
        sample_rows=True,
        seed=config.seed,
        model_dropout=config.model_dropout,
        history_dropout=config.history_dropout,
        **common,
    )
    val_loader = None
    if corpus.datasets_in(("val",)):
        val_loader = build_ranking_loader(corpus, splits=("val",), batch_size=config.batch_size, **common)
    if val_loader is None:  # nothing to early-stop on: keep the last epoch's weights only if train loss improves
        config = replace(config, trainer=replace(config.trainer, monitor="train_loss", monitor_mode="min"))
    if ranker_config.residual_init:
        config = replace(config, trainer=replace(config.trainer, validate_initial=True))
    trainer = RankerTrainer(model, config, out_dir, steps_per_epoch=len(train_loader))
    history = trainer.fit(train_loader, val_loader)
    info = {"splits": dict(corpus.splits), "models_seen_in_training": int(seen.sum())}
    artifact = RankerArtifact(model=model, training=config, model_normalizer=normalizer, info=info, reference=reference)
    return artifact, history


def fit_ranker(
    corpus: RankingCorpus,
    families: Mapping[str, str],
    config: RankerFitConfig,
    out_dir: Path | None = None,
    device: str = "cpu",
) -> tuple[RankerArtifact, TrainingHistory, RankingCorpus]:
    """The product's fit: the corpus's datasets split by family (``config``'s fractions and seed), the
    ranker trained on ``train`` and early-stopped on ``val``. Returns the artifact, its history and the
    corpus with its splits (``test`` datasets are held out for :func:`evaluate_rankers`)."""
    splits = assign_dataset_splits(corpus.dataset_names, families=families, val_fraction=config.val_fraction,
                                   test_fraction=config.test_fraction, seed=config.seed)
    corpus = replace(corpus, splits=splits)
    training = config.training.with_seed(config.seed)
    training = replace(training, trainer=replace(training.trainer, device=device))
    artifact, history = train_ranker(corpus, training, out_dir, families=families)
    return artifact, history, corpus
