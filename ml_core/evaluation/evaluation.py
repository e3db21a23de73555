"""Held-out evaluation of the learned ranker against the baselines, fold by fold.

For every fold (:mod:`ml_core.evaluation.folds`) and every held-out dataset, each method ranks
the fold's evaluation models (all models for leave-family-out, the held-out models for
leave-models-out) and is scored against the measured accuracies:

* ``random`` -- seeded uniform scores;
* ``prior`` -- data-free prior from the fold's training datasets;
* ``nearest`` -- nearest-dataset scores from the fold's training datasets (dataset tokens only);
* ``source_similarity`` -- how much the dataset looks like each model's sample of pre-training
  images (:mod:`ml_core.ranking.baselines.source`; no past results, no forward pass);
* ``nearest_source_profile`` -- nearest-dataset with datasets compared by their source profiles
  (similarity to each pre-training sample, :func:`ml_core.ranking.baselines.source.source_profiles`);
* ``weight_neighbours`` -- the nearest-dataset scores of each model's nearest *seen* models in
  weight-embedding space (:meth:`ml_core.ranking.BaselineReference.neighbour_scores`; never the
  model itself): what the weights alone say about a model with no results;
* ``source+weights`` -- the sum of the z-scored source similarity and weight neighbours (no
  training, no forward pass): the two opinions that exist for a new model;
* ``prior_size`` / ``prior_source_accuracy`` -- the other data-free priors: the models ordered by their
  parameter count, or by their accuracy on their own pre-training task (from the cards); ``best_prior``
  is whichever of the three priors validation prefers, per protocol (for new models the history prior
  says nothing, the other two still speak);
* ``logme`` / ``h_score`` / ``probe`` -- forward-pass baselines: every evaluation model run on the
  target (``probe``: a 4-fold linear probe's accuracy on its features); ``probe+prior``: the sum of the
  z-scored probe and prior, and ``probe+logme+prior`` with LogME's z-score too (leave-family-out: both
  LogME and the probe come from the same forward pass); ``best_all_pass`` is whichever of the four
  validation prefers (leave-family-out), the bar a budget of forward passes is measured against;
* ``budget@<k>`` -- a budget of ``k`` forward passes (:mod:`ml_core.ranking.budget`; leave-family-out
  only): ``k`` models measured one at a time by a proxy (the linear probe, LogME, or both from the same
  pass, ``probe+logme``), the others
  predicted from how the training datasets' results co-vary with the measured ones; ``k = 0`` is the
  prior. The proxy, the choice of the next model and the two strengths are chosen on validation
  (``budget:<proxy>:<selection>@<k>``: the best setting of each proxy and selection rule, the ablation);
* ``ranker:<variant>`` -- each learned variant, trained on the fold's training datasets (and,
  for leave-models-out, on the seen models only, with model tokens from an autoencoder that
  never saw the held-out models), early-stopped on the fold's validation datasets;
* ``ranker:ensemble`` -- with several variants, the mean of their z-scored scores;
* ``two_stage:<variant>`` -- that ranker shortlists ``k`` models, LogME re-ranks only those;
* ``two_stage_prior`` / ``two_stage_nearest`` -- the same with the prior's or nearest-dataset's
  shortlist (leave-family-out only: held-out models have no history), to show how much of the
  two-stage result is the shortlist's quality;
* ``two_stage_coverage`` and ``two_stage_coverage:<variant>`` -- a *coverage* shortlist
  (:func:`ml_core.ranking.shortlist.coverage_shortlist`): the models that were best on the training
  datasets, greedily, after the variant's own top ``k // 2`` (leave-family-out only);
* ``oracle_nearest`` -- NOT a method: nearest-dataset with the neighbours chosen by how well their
  accuracies correlate with the *test* dataset's true accuracies. It reads the answer, so it is
  the ceiling of any ranking built from the training datasets' results by neighbours; it is
  never a selection candidate.

The variant reported as ``ranker`` (and ``two_stage``) is chosen by its *validation* weighted tau
(the mean of its leave-family-out and leave-models-out validation scores: one ranker serves new
datasets and new models): test datasets never take part in the choice. The shortlist policy
reported as ``two_stage`` (the variant's top ``k``, or its coverage shortlist) is chosen by the
leave-family-out validation score (held-out models have no history to cover).
Compute per method and dataset: model forward passes and seconds (LogME's and H-score's
seconds are the measured forward passes of the models they need).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ml_core.evaluation.folds import Fold, leave_family_out_folds, leave_models_out_folds
from ml_core.evaluation.variants import evaluation_base, variant_configs
from ml_core.images import DatasetTokens, dataset_descriptor
from ml_core.metrics import ranking_report, spearman, weighted_tau
from ml_core.progress import progress
from ml_core.ranking import (
    BaselineReference,
    BudgetConfig,
    RankerTrainingConfig,
    RankingCorpus,
    accuracy_matrix,
    budgeted_ranking,
    coverage_shortlist,
    rerank_shortlist,
    top_k,
    train_ranker,
    two_stage_shortlist,
    zscore,
)
from ml_core.ranking.baselines import (
    attribute_prior,
    data_free_prior,
    nearest_by_profile,
    nearest_dataset_scores,
    neighbour_scores,
    random_scores,
    source_similarity_scores,
)
from ml_core.weights import Corpus, EmbeddingConfig, ModelParameters, WeightEmbedderConfig, embed, train_embedder

logger = logging.getLogger(__name__)

METRICS = ("weighted_tau_truth", "weighted_tau_scipy", "kendall_tau_b", "spearman", "top1_regret", "top3_recall", "ndcg")
TokensWithout = Callable[[Sequence[str]], np.ndarray]
ENSEMBLE = "ensemble"  # mean of every variant's z-scored scores (the variants' errors partly cancel)


@dataclass
class EvaluationData:
    """Everything the evaluation reads, aligned: ``D`` labelled datasets x ``N`` models."""

    model_names: list[str]
    dataset_names: list[str]
    accuracy: np.ndarray  # (D, N), fraction
    families: dict[str, str]
    dataset_tokens: dict[str, DatasetTokens]
    model_tokens: np.ndarray  # (N, Dm) from the autoencoder (trained without labels)
    logme: np.ndarray | None = None  # (D, N)
    h_score: np.ndarray | None = None  # (D, N)
    forward_seconds: np.ndarray | None = None  # (D, N): one model's forward pass over the target
    model_sources: np.ndarray | None = None  # (N, Dd): source-sample descriptors, NaN rows: none
    probe: np.ndarray | None = None  # (D, N): 4-fold linear-probe accuracy on the target's features
    model_sizes: np.ndarray | None = None  # (N,): parameter counts
    source_accuracy: np.ndarray | None = None  # (N,): accuracy on the model's own pre-training task, NaN: unknown

    def row(self, dataset: str) -> int:
        return self.dataset_names.index(dataset)


def evaluation_data(
    ranks: pd.DataFrame,
    model_tokens: Mapping[str, np.ndarray],
    dataset_tokens: Mapping[str, DatasetTokens],
    families: Mapping[str, str],
    transferability: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None,
    model_sources: np.ndarray | None = None,
    model_attributes: Mapping[str, Mapping[str, float | None]] | None = None,
) -> EvaluationData:
    """Align the evaluation's inputs: the models with a token and the labelled datasets with tokens
    (both sorted by key), their accuracies from the ground truth ``ranks``, each dataset's family,
    and, when every labelled dataset has them, the forward-pass baselines ``transferability[dataset]
    [model] = {"logme", "h_score", "probe", "forward_seconds"}``. ``dataset_tokens`` may load lazily: only
    the labelled datasets are read. ``model_sources`` are aligned with the sorted model keys;
    ``model_attributes[model]`` may give ``n_parameters`` and ``source_accuracy`` (the other priors)."""
    models = sorted(model_tokens)
    datasets = sorted(set(ranks["dataset_key"]) & set(dataset_tokens))
    accuracy = accuracy_matrix(ranks, datasets, models)
    transferability = transferability or {}
    scores = {k: np.full(accuracy.shape, np.nan) for k in ("logme", "h_score", "probe", "forward_seconds")}
    for i, d in enumerate(datasets):
        cells = transferability.get(d, {})
        for j, m in enumerate(models):
            if m in cells:
                for key in scores:
                    scores[key][i, j] = cells[m].get(key, np.nan)  # cells scored before the probe have none
    have_scores = all(d in transferability for d in datasets)
    have_probe = have_scores and bool(np.any(~np.isnan(scores["probe"])))
    attributes = {key: np.array([np.nan if (v := (model_attributes or {}).get(m, {}).get(key)) is None else v
                                 for m in models], dtype=np.float64)
                  for key in ("n_parameters", "source_accuracy")}
    return EvaluationData(
        model_names=models,
        dataset_names=datasets,
        accuracy=accuracy,
        families={d: families.get(d, d) for d in datasets},
        dataset_tokens={d: dataset_tokens[d] for d in datasets},
        model_tokens=np.stack([model_tokens[m] for m in models]),
        logme=scores["logme"] if have_scores else None,
        h_score=scores["h_score"] if have_scores else None,
        forward_seconds=scores["forward_seconds"] if have_scores else None,
        model_sources=model_sources,
        probe=scores["probe"] if have_probe else None,
        model_sizes=attributes["n_parameters"] if np.any(~np.isnan(attributes["n_parameters"])) else None,
        source_accuracy=attributes["source_accuracy"] if np.any(~np.isnan(attributes["source_accuracy"])) else None,
    )


def retrained_tokens(
    parameters: Mapping[str, ModelParameters],
    training: WeightEmbedderConfig,
    models: Sequence[str],
    embedding: EmbeddingConfig | None = None,
    corpus: Corpus | None = None,
) -> TokensWithout:
    """``tokens_without(held_out)``: the tokens of ``models`` from a weight embedder trained (with
    ``training``, the config of the one the evaluated tokens came from) without the held-out models
    (nor their ``corpus`` weights), pooled by ``embedding`` (the default
    :class:`~ml_core.weights.EmbeddingConfig` when None)."""
    embedding = embedding or EmbeddingConfig()

    def tokens_without(held_out: Sequence[str]) -> np.ndarray:
        params = {k: parameters[k] for k in models}
        seen = {k: v for k, v in params.items() if k not in set(held_out)}
        artifact, _ = train_embedder(seen, training, corpus={k: v for k, v in (corpus or {}).items() if k in seen})
        return np.stack([embed(params[k], artifact, embedding).token for k in models])

    return tokens_without


@dataclass(frozen=True)
class EvaluationConfig:
    """What the held-out evaluation runs.

    ``variants``: the learned-ranker variants compared (names of :data:`~ml_core.evaluation.variants.VARIANTS`
    or sets of :data:`~ml_core.evaluation.variants.VARIANT_SETS`), each ``base`` with its changes;
    ``val_families``: validation families per fold; ``models_folds``: leave-models-out folds;
    ``two_stage_k``: the two-stage shortlist (0: a third of the evaluated models); ``knn_k`` /
    ``knn_temperature``: the nearest-dataset baseline; ``budget_passes``: the largest budget of forward
    passes evaluated (0: a fifth of the zoo), with the grid that validation chooses from: the mixture's
    ``budget_strengths`` x ``budget_blends`` (:class:`~ml_core.ranking.BudgetConfig`'s ``strength`` and
    ``measured_weight``), the Gaussian's ``budget_noises`` x ``budget_shrinkages`` (for the probe, an
    accuracy), each with every rule of ``budget_selections``; ``budget_second_weight``: LogME's weight beside
    the probe for the proxy ``probe+logme`` (both from one pass). ``seed`` seeds the folds and every variant's
    training (``base``'s own seeds are replaced by it).
    """

    variants: tuple[str, ...] = ("default",)
    base: RankerTrainingConfig = field(default_factory=evaluation_base)
    val_families: int = 2
    models_folds: int = 3
    two_stage_k: int = 0
    knn_k: int = 3
    knn_temperature: float = 0.05
    budget_passes: int = 0
    budget_strengths: tuple[float, ...] = (0.5, 1.0, 2.0)
    budget_blends: tuple[float, ...] = (0.0, 0.5, 1.0)
    budget_noises: tuple[float, ...] = (0.02, 0.05, 0.1)
    budget_shrinkages: tuple[float, ...] = (0.0, 0.2, 0.5)
    budget_selections: tuple[str, ...] = ("expected_gain", "top", "uncertainty")
    budget_second_weight: float = 0.5
    seed: int = 0

    def ranker_variants(self) -> dict[str, RankerTrainingConfig]:
        """Every variant's training config, by name."""
        return variant_configs(self.variants, self.base, seed=self.seed)


#: columns of the evaluation rows that are measured wall-clock times (reported, never hashed)
TIMING_COLUMNS = ("seconds",)


@dataclass
class EvaluationResult:
    rows: pd.DataFrame  # one row per (fold, dataset, split, method)
    selected_variant: str
    variant_validation: dict[str, float]
    folds: list[dict[str, Any]] = field(default_factory=list)
    selected_shortlist: str = ""  # the method reported as "two_stage"
    shortlist_validation: dict[str, float] = field(default_factory=dict)
    selected_priors: dict[str, str] = field(default_factory=dict)  # protocol -> the prior reported as "best_prior"
    budget_validation: dict[str, float] = field(default_factory=dict)  # budget setting -> validation score
    selected_budget: str = ""  # the proxy and selection rule reported as "budget@<k>"
    selected_all_pass: str = ""  # the all-pass method reported as "best_all_pass"

    def summary(self, split: str = "test") -> pd.DataFrame:
        return summarize(self.rows[self.rows["split"] == split])

    def content_hash(self) -> str:
        """sha256 of the rows without their :data:`TIMING_COLUMNS`: wall-clock seconds differ from run to
        run and machine to machine, so a data version that read them would never repeat."""
        rows = self.rows.drop(columns=[c for c in TIMING_COLUMNS if c in self.rows.columns])
        return hashlib.sha256(pd.util.hash_pandas_object(rows, index=False).values.tobytes()).hexdigest()


def _report(accuracy: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Metrics on scores; a constant ranking carries no information: its taus are 0 (not NaN)."""
    report = ranking_report(accuracy, scores)
    report["top1_regret"] *= 100.0  # accuracy points
    if np.ptp(scores[~np.isnan(accuracy)]) == 0:
        for key in ("weighted_tau_truth", "weighted_tau_scipy", "kendall_tau_b", "spearman"):
            report[key] = 0.0
    return report


def oracle_neighbour_scores(
    truth: np.ndarray, train_accuracy: np.ndarray, k: int, temperature: float
) -> np.ndarray:
    """CEILING, not a method: nearest-dataset scores with the ``k`` training datasets whose
    accuracies correlate best (Spearman) with the test dataset's TRUE accuracies ``truth (N,)``."""
    sims = []
    for row in train_accuracy:
        both = ~np.isnan(truth) & ~np.isnan(row)
        sims.append(spearman(truth[both], row[both]) if both.sum() >= 2 else -1.0)
    sims = np.nan_to_num(np.array(sims), nan=-1.0)  # a constant row correlates with nothing
    return neighbour_scores(sims, train_accuracy, k=k, temperature=temperature)


def _fold_corpus(data: EvaluationData, fold: Fold, tokens: np.ndarray, seen: list[int]) -> RankingCorpus:
    names = list(fold.train) + list(fold.val)
    rows = [data.row(d) for d in names]
    return RankingCorpus(
        model_names=[data.model_names[i] for i in seen],
        model_tokens=tokens[seen],
        dataset_names=names,
        dataset_tokens={d: data.dataset_tokens[d] for d in names},
        accuracy=data.accuracy[np.ix_(rows, seen)],
        splits={**{d: "train" for d in fold.train}, **{d: "val" for d in fold.val}},
        model_sources=data.model_sources[seen] if data.model_sources is not None else None,
    )


def evaluate_fold(
    data: EvaluationData,
    fold: Fold,
    config: EvaluationConfig,
    tokens_without: TokensWithout | None = None,
    variants: Mapping[str, RankerTrainingConfig] | None = None,
) -> list[dict[str, Any]]:
    """Rows for every method on the fold's validation and test datasets.

    ``variants`` (default: ``config.ranker_variants()``) are the learned rankers trained on the fold;
    ``tokens_without(held_out_models)`` gives model tokens from an autoencoder that never saw them
    (needed by leave-models-out folds only)."""
    variants = config.ranker_variants() if variants is None else variants
    all_models = list(data.model_names)
    held = set(fold.held_out_models)
    eval_idx = [i for i, m in enumerate(all_models) if not held or m in held]
    seen = [i for i, m in enumerate(all_models) if m not in held]
    tokens = data.model_tokens if not held else tokens_without(sorted(held))
    train_rows = [data.row(d) for d in fold.train]
    train_acc = data.accuracy[train_rows].copy()
    train_acc[:, [i for i in range(len(all_models)) if i not in seen]] = np.nan  # held-out models have no results
    train_desc = np.stack([dataset_descriptor(data.dataset_tokens[d]) for d in fold.train])
    prior = data_free_prior(train_acc[:, seen])
    prior_all = np.full(len(all_models), np.nan)
    prior_all[seen] = prior
    prior_all = np.where(np.isnan(prior_all), np.nanmean(prior), prior_all)  # unseen models: neutral

    corpus = _fold_corpus(data, fold, tokens, seen)
    weight_reference = BaselineReference(
        dataset_names=list(fold.train), model_names=[all_models[i] for i in seen], accuracy=train_acc[:, seen],
        descriptors=train_desc, families={d: data.families.get(d, d) for d in fold.train}, k=config.knn_k,
        temperature=config.knn_temperature, model_tokens=tokens[seen],
    )
    rankers = {}
    for name, variant in variants.items():
        start = time.perf_counter()
        artifact, _ = train_ranker(corpus, variant, families=data.families)
        rankers[name] = (artifact, time.perf_counter() - start)

    rows: list[dict[str, Any]] = []
    for split, datasets in (("val", fold.val), ("test", fold.test)):
        for dataset in datasets:
            r = data.row(dataset)
            acc = data.accuracy[r, eval_idx]
            if np.sum(~np.isnan(acc)) < 2:
                continue
            base = {"protocol": fold.kind, "fold": fold.name, "dataset": dataset, "split": split,
                    "family": data.families.get(dataset, dataset), "n_models": len(eval_idx)}

            def add(method: str, scores: np.ndarray, passes: int, seconds: float) -> None:
                rows.append({**base, "method": method, **_report(acc, scores[eval_idx]),
                             "forward_passes": passes, "seconds": seconds})

            seed = zlib.crc32(f"{config.seed}:{fold.name}:{dataset}".encode())
            add("random", random_scores(len(all_models), seed), 0, 0.0)
            add("prior", prior_all, 0, 0.0)
            if data.model_sizes is not None:
                add("prior_size", attribute_prior(data.model_sizes, log=True), 0, 0.0)
            if data.source_accuracy is not None:
                add("prior_source_accuracy", attribute_prior(data.source_accuracy), 0, 0.0)
            start = time.perf_counter()
            descriptor = dataset_descriptor(data.dataset_tokens[dataset])  # the dataset's mean feature, once
            nearest, _ = nearest_dataset_scores(
                descriptor, train_desc, train_acc,
                k=config.knn_k, temperature=config.knn_temperature,
            )
            add("nearest", nearest, 0, time.perf_counter() - start)
            if data.model_sources is not None:
                start = time.perf_counter()
                similarity = source_similarity_scores(descriptor, data.model_sources)
                add("source_similarity", similarity, 0, time.perf_counter() - start)
                start = time.perf_counter()
                by_profile = nearest_by_profile(descriptor, train_desc, train_acc, data.model_sources)
                if by_profile is not None:
                    add("nearest_source_profile", by_profile, 0, time.perf_counter() - start)
            if len(seen) > 1:  # the models' weight-space neighbours among the seen ones (never themselves)
                start = time.perf_counter()
                features = weight_reference.features(descriptor, all_models, None, data.model_sources, tokens)
                add("weight_neighbours", features[:, 3], 0, time.perf_counter() - start)
                if data.model_sources is not None:
                    add("source+weights", features[:, 2] + features[:, 3], 0, time.perf_counter() - start)
            fwd = data.forward_seconds[r] if data.forward_seconds is not None else np.zeros(len(all_models))
            if data.logme is not None:
                add("logme", data.logme[r], len(eval_idx), float(np.nansum(fwd[eval_idx])))
            if data.h_score is not None:
                add("h_score", data.h_score[r], len(eval_idx), float(np.nansum(fwd[eval_idx])))
            if data.probe is not None:
                add("probe", data.probe[r], len(eval_idx), float(np.nansum(fwd[eval_idx])))
                if not held:  # the all-pass opinions summed: the probe's and the prior's, and LogME's
                    add("probe+prior", zscore(data.probe[r]) + zscore(prior_all), len(eval_idx),
                        float(np.nansum(fwd[eval_idx])))
                    if data.logme is not None:  # the same features: no other forward pass
                        add("probe+logme+prior", zscore(data.probe[r]) + zscore(data.logme[r]) + zscore(prior_all),
                            len(eval_idx), float(np.nansum(fwd[eval_idx])))
            if not held:  # a budget of forward passes reads the history, which new models do not have
                proxies = {"probe": data.probe, "logme": data.logme}
                if data.probe is not None and data.logme is not None:  # both read off the same features
                    proxies[BOTH_PROXIES] = np.stack([data.probe, data.logme], axis=-1)
                for proxy, table in proxies.items():
                    if table is not None:
                        rows.extend(_budget_rows(base, acc, train_acc, table[r], fwd, proxy, config))
            if not held:  # the ceiling of neighbour-based rankings (reads the test truth)
                add("oracle_nearest", oracle_neighbour_scores(data.accuracy[r], train_acc, config.knn_k,
                                                              config.knn_temperature), 0, 0.0)
            k = config.two_stage_k or max(1, len(eval_idx) // 3)
            history = train_acc[:, eval_idx]

            def add_two_stage(method: str, shortlister: np.ndarray, short: np.ndarray | None = None) -> None:
                """LogME re-ranks ``short`` (default: the shortlister's top k) above the others."""
                short = top_k(shortlister, k) if short is None else short
                two = rerank_shortlist(shortlister, data.logme[r, eval_idx], short)
                rows.append({**base, "method": method, **_report(acc, two), "forward_passes": len(short),
                             "seconds": float(np.nansum(fwd[[eval_idx[i] for i in short]]))})

            if data.logme is not None and not held:  # new models have no history to shortlist them by
                add_two_stage("two_stage_prior", prior_all[eval_idx])
                add_two_stage("two_stage_nearest", nearest[eval_idx])
                add_two_stage("two_stage_coverage", prior_all[eval_idx],  # pure coverage; the prior breaks ties
                              coverage_shortlist(history, k, prior_all[eval_idx]))
            members, ensemble_seconds = [], 0.0

            def add_ranker(name: str, scores: np.ndarray, seconds: float) -> None:
                add(f"ranker:{name}", scores, 0, seconds)
                if data.logme is not None:
                    add_two_stage(f"two_stage:{name}", scores[eval_idx])
                    if not held:
                        add_two_stage(f"two_stage_coverage:{name}", scores[eval_idx],  # as the product does
                                      two_stage_shortlist(scores[eval_idx], history, k))

            for name, (artifact, _train_seconds) in rankers.items():
                start = time.perf_counter()
                scores = artifact.score(data.dataset_tokens[dataset], tokens, all_models, data.model_sources)
                seconds = time.perf_counter() - start
                add_ranker(name, scores, seconds)
                members.append(zscore(scores))
                ensemble_seconds += seconds
            if len(members) > 1:
                add_ranker(ENSEMBLE, np.mean(members, axis=0), ensemble_seconds)
    return rows


BUDGET_GRID = "budget_grid"  # rows of every budget setting; validation picks one per proxy and rule
BOTH_PROXIES = "probe+logme"  # each pass measures both; the probe is the accuracy the Gaussian reads


def budget_settings(config: EvaluationConfig, proxy: str) -> list[tuple[str, BudgetConfig]]:
    """``(name, config)`` of every budget setting of the grid for ``proxy`` (the passes are set per fold):
    ``<selection>:mixture:s<strength>:b<blend>`` (the probe, LogME), and, for a proxy on the history's
    accuracy scale (the probe, and the probe with LogME blended in by ``budget_second_weight``),
    ``<selection>:gaussian:n<noise>:r<shrinkage>``."""
    settings = []
    second = config.budget_second_weight if proxy == BOTH_PROXIES else 0.0
    for selection in config.budget_selections:
        if proxy != BOTH_PROXIES:
            settings += [(f"{selection}:mixture:s{strength:g}:b{blend:g}",
                          BudgetConfig(passes=0, strength=strength, measured_weight=blend, selection=selection))
                         for strength in config.budget_strengths for blend in config.budget_blends]
        if proxy in ("probe", BOTH_PROXIES):  # an accuracy: the Gaussian reads it on the history's scale
            settings += [(f"{selection}:gaussian:n{noise:g}:r{shrinkage:g}",
                          BudgetConfig(passes=0, method="gaussian", noise=noise, shrinkage=shrinkage,
                                       selection=selection, second_weight=second))
                         for noise in config.budget_noises for shrinkage in config.budget_shrinkages]
    return settings


def budget_passes(config: EvaluationConfig, n_models: int) -> int:
    """The largest budget evaluated: ``config.budget_passes``, or a fifth of the zoo."""
    return config.budget_passes or max(1, n_models // 5)


def _budget_rows(base: dict[str, Any], accuracy: np.ndarray, history: np.ndarray, proxy_values: np.ndarray,
                 forward_seconds: np.ndarray, proxy: str, config: EvaluationConfig) -> list[dict[str, Any]]:
    """Rows ``budget_grid:<proxy>:<setting>@<k>`` for ``k = 1..`` :func:`budget_passes` of one dataset:
    each pass measures one model's cached ``proxy_values (N,)``, or ``(N, 2)`` for two proxies of the same
    pass (its forward pass's seconds counted).

    A grid row holds only the weighted tau validation chooses by, with the accuracies and scores it came
    from (``_accuracy`` / ``_scores``), so that :func:`select_budget` computes every metric of the chosen
    rows only: the grid is a few hundred rankings per dataset."""
    passes = budget_passes(config, len(proxy_values))
    known = ~np.isnan(accuracy)
    rows = []
    for name, setting in budget_settings(config, proxy):
        run = budgeted_ranking(history, lambda j: proxy_values[j], dataclasses.replace(setting, passes=passes))
        for k in range(1, len(run.trace)):
            scores = run.trace[k]
            tau = weighted_tau(accuracy[known], scores[known]) if np.ptp(scores[known]) > 0 else 0.0
            rows.append({**base, "method": f"{BUDGET_GRID}:{proxy}:{name}@{k}", "weighted_tau_truth": tau,
                         "_accuracy": accuracy, "_scores": scores, "forward_passes": k,
                         "seconds": float(np.nansum(forward_seconds[run.measured[:k]]))})
    return rows


def select_budget(rows: pd.DataFrame) -> tuple[pd.DataFrame, str, dict[str, float]]:
    """The budget rows to report, from the grid's: per proxy, selection rule and method, the setting with
    the best leave-family-out validation weighted tau (mean over the budgets ``k >= 1``) as
    ``budget:<proxy>:<selection>:<method>@<k>``; the best of those as ``budget@<k>``, with the prior as
    ``budget@0``. Returns the rows, the chosen rule (and setting) and every setting's score."""
    grid = rows[rows["method"].str.startswith(BUDGET_GRID + ":")]
    if grid.empty:
        return grid, "", {}
    parts = grid["method"].str.slice(len(BUDGET_GRID) + 1).str.rsplit("@", n=1, expand=True)
    val = grid[(grid["split"] == "val") & (grid["protocol"] == "family")]
    per_setting = (val.assign(setting=parts[0]).groupby(["setting", "fold"])["weighted_tau_truth"].mean()
                   .groupby("setting").mean())
    scores = {k: float(v) for k, v in per_setting.items()}
    if not scores:  # no leave-family-out validation dataset: nothing to choose by, nothing reported
        return grid.iloc[:0].drop(columns=["_accuracy", "_scores"], errors="ignore"), "", {}
    chosen: dict[str, str] = {}
    for setting, score in scores.items():
        rule = ":".join(setting.split(":")[:3])  # <proxy>:<selection>:<method>
        if rule not in chosen or score > scores[chosen[rule]]:
            chosen[rule] = setting
    best_rule = max(chosen, key=lambda rule: scores[chosen[rule]])
    out = []
    for rule, setting in chosen.items():
        mine = grid[parts[0] == setting]
        k = parts[1][parts[0] == setting]
        out.append(mine.assign(method="budget:" + rule + "@" + k))
        if rule == best_rule:
            out.append(mine.assign(method="budget@" + k))
    reported = pd.concat(out, ignore_index=True)
    metrics = pd.DataFrame([_report(a, s) for a, s in zip(reported["_accuracy"], reported["_scores"], strict=True)],
                           index=reported.index)
    reported = reported.drop(columns=["_accuracy", "_scores", *[c for c in metrics if c in reported]]).join(metrics)
    prior = rows[(rows["method"] == "prior") & (rows["protocol"] == "family")]
    reported = pd.concat([reported, prior.assign(method="budget@0")], ignore_index=True)
    return reported.drop(columns=["_accuracy", "_scores"], errors="ignore"), \
        f"{best_rule} ({chosen[best_rule].split(':', 3)[3]})", scores


PRIORS = ("prior", "prior_size", "prior_source_accuracy")
#: the methods that run every evaluated model on the target (leave-family-out), ``best_all_pass`` among them
ALL_PASS = ("probe", "logme", "probe+prior", "probe+logme+prior")


def _select_best(rows: pd.DataFrame, candidates: Sequence[str], label: str,
                 protocols: Sequence[str] | None = None) -> tuple[pd.DataFrame, dict[str, str]]:
    """Rows ``label``: per protocol (of ``protocols``, default every one), the method of ``candidates``
    with the best validation weighted tau on that protocol's folds, and which one it was."""
    out, chosen = [], {}
    for protocol in rows["protocol"].unique() if protocols is None else protocols:
        scores = {m: validation_score(rows, m, protocol) for m in candidates}
        scores = {m: v for m, v in scores.items() if not np.isnan(v)}
        if not scores:
            continue
        chosen[protocol] = _best(scores)
        out.append(rows[(rows["method"] == chosen[protocol]) & (rows["protocol"] == protocol)])
    return (pd.concat(out, ignore_index=True).assign(method=label) if out else rows.iloc[:0]), chosen


def select_priors(rows: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """Rows ``best_prior``: per protocol, the data-free prior (history, size or source accuracy) with the
    best validation weighted tau on that protocol's folds, and which one it was."""
    return _select_best(rows, PRIORS, "best_prior")


def select_all_pass(rows: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Rows ``best_all_pass``: the all-pass method of :data:`ALL_PASS` with the best leave-family-out
    validation weighted tau (the bar for a budget of forward passes), and which one it was."""
    best, chosen = _select_best(rows, ALL_PASS, "best_all_pass", protocols=("family",))
    return best, chosen.get("family", "")


def evaluation_folds(data: EvaluationData, config: EvaluationConfig) -> list[Fold]:
    """The folds the evaluation runs: one leave-family-out fold per family, then ``config.models_folds``
    leave-models-out folds; seeded by ``config.seed``."""
    folds = leave_family_out_folds(data.dataset_names, data.families, val_families=config.val_families,
                                   seed=config.seed)
    return folds + leave_models_out_folds(data.model_names, data.dataset_names, data.families,
                                          n_folds=config.models_folds, val_families=config.val_families,
                                          seed=config.seed)


def candidate_variants(variants: Sequence[str]) -> list[str]:
    """The variants validation chooses among: each one, and their ensemble when there are several."""
    return [*variants, ENSEMBLE] if len(variants) > 1 else list(variants)


def validation_score(rows: pd.DataFrame, method: str, protocol: str = "family") -> float:
    """Mean over ``protocol``'s folds of the per-fold mean validation weighted tau of ``method``."""
    val = rows[(rows["split"] == "val") & (rows["protocol"] == protocol) & (rows["method"] == method)]
    per_fold = val.groupby("fold")["weighted_tau_truth"].mean()
    return float(per_fold.mean()) if len(per_fold) else float("nan")


def _best(scores: dict[str, float]) -> str:
    return max(scores, key=lambda n: -np.inf if np.isnan(scores[n]) else scores[n])


def select_variant(rows: pd.DataFrame, variants: Sequence[str]) -> tuple[str, dict[str, float]]:
    """The variant with the best validation weighted tau: the mean of its leave-family-out and (when
    run) leave-models-out validation scores, since one ranker serves both new datasets and new models."""
    scores = {}
    for name in variants:
        per_protocol = [validation_score(rows, f"ranker:{name}", p) for p in ("family", "models")]
        known = [v for v in per_protocol if not np.isnan(v)]
        scores[name] = float(np.mean(known)) if known else float("nan")
    return _best(scores), scores


def select_shortlist(rows: pd.DataFrame, variant: str) -> tuple[str, dict[str, float]]:
    """The two-stage method of ``variant`` (its top k, or its coverage shortlist) that validation prefers."""
    scores = {m: validation_score(rows, m) for m in (f"two_stage:{variant}", f"two_stage_coverage:{variant}")}
    scores = {m: v for m, v in scores.items() if not np.isnan(v)}
    return (_best(scores), scores) if scores else (f"two_stage:{variant}", {})


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """Per protocol and method: mean over folds of the per-fold mean of each metric, and its std."""
    records = []
    for (protocol, method), part in rows.groupby(["protocol", "method"], sort=False):
        per_fold = part.groupby("fold")[[*METRICS, "forward_passes", "seconds"]].mean()
        record = {"protocol": protocol, "method": method, "n_folds": len(per_fold), "n_datasets": len(part)}
        for metric in (*METRICS, "forward_passes", "seconds"):
            record[f"{metric}_mean"] = float(per_fold[metric].mean())
            record[f"{metric}_std"] = float(per_fold[metric].std(ddof=0))
        records.append(record)
    return pd.DataFrame(records)


def evaluate(
    data: EvaluationData,
    folds: Sequence[Fold],
    config: EvaluationConfig,
    tokens_without: TokensWithout | None = None,
    variants: Mapping[str, RankerTrainingConfig] | None = None,
) -> EvaluationResult:
    """Run every fold; choose the reported ranker variant on validation; label its rows.

    ``variants`` (default: ``config.ranker_variants()``): see :func:`evaluate_fold`."""
    variants = config.ranker_variants() if variants is None else variants
    rows: list[dict[str, Any]] = []
    for fold in progress(folds, desc="evaluation folds"):
        rows.extend(evaluate_fold(data, fold, config, tokens_without, variants))
        logger.info("fold %s done (%d rows)", fold.name, len(rows))
    frame = pd.DataFrame(rows)
    selected, validation = select_variant(frame, candidate_variants(list(variants)))
    shortlist, shortlist_validation = select_shortlist(frame, selected)
    chosen = frame[frame["method"] == f"ranker:{selected}"].assign(method="ranker")
    two_stage = frame[frame["method"] == shortlist]
    if shortlist != f"two_stage:{selected}":  # coverage rows are leave-family-out only: new models keep top k
        two_stage = pd.concat([two_stage, frame[(frame["method"] == f"two_stage:{selected}")
                                                & (frame["protocol"] == "models")]])
    best_prior, priors = select_priors(frame)
    best_all_pass, all_pass = select_all_pass(frame)
    budget, budget_choice, budget_validation = select_budget(frame)
    frame = frame[~frame["method"].str.startswith(BUDGET_GRID + ":")]  # the grid is kept as its chosen rows
    frame = frame.drop(columns=["_accuracy", "_scores"], errors="ignore")
    frame = pd.concat([frame, chosen, two_stage.assign(method="two_stage"), best_prior, best_all_pass, budget],
                      ignore_index=True)
    return EvaluationResult(frame, selected, validation, [f.to_dict() for f in folds], shortlist,
                            shortlist_validation, priors, budget_validation, budget_choice, all_pass)
