"""Does a model embedding mean anything? Linear probes on models the embedder never saw.

For each of ``n_folds`` folds over the models, a *describer* is given the training models only and
returns a descriptor for every model (a learned embedder is trained on the training models' weights
alone and then applied to all); a probe fitted on the training models' descriptors predicts four
properties of the held-out ones:

* ``architecture`` and ``source`` (the pre-training task): standardised multinomial logistic
  regression, scored by accuracy over the held-out models whose class occurs among the fold's
  training models. For ``source`` the descriptors are first centred per architecture (minus the mean
  of the fold's training models of the same architecture): in a zoo where every architecture is
  trained on every source, a held-out model's architecture-mates all have *other* sources, so an
  uncentred probe that reads the architecture scores below chance;
* ``source_accuracy`` and ``mean_transfer`` (the model's mean accuracy over the performance table's
  datasets): standardised ridge regression (penalty chosen by leave-one-out on the training models),
  scored by R^2 of the pooled held-out predictions (each clipped to the training models' range).

The same folds serve every describer, so their scores are paired. The trivial descriptors
(:func:`ml_core.weights.weight_statistics`) and random vectors are the bars.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import r2_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ml_core.weights import (
    Corpus,
    EmbeddingConfig,
    ModelCard,
    ModelParameters,
    WeightEmbedderConfig,
    embed,
    train_embedder,
    weight_statistics,
)

logger = logging.getLogger(__name__)

CATEGORICAL = ("architecture", "source")
NUMERIC = ("source_accuracy", "mean_transfer")
PROPERTIES = CATEGORICAL + NUMERIC

@dataclass(frozen=True)
class ProbeConfig:
    """How the probes run: ``n_folds`` model folds (each retrains the embedder), one per ``seeds``
    entry (folds, embedder training and random vectors all seeded by it), and on how many properties
    the embedding must beat the best trivial descriptor to pass (``min_properties_beaten``; a
    property where both are perfect counts as matched, see :func:`probe_verdict`)."""

    n_folds: int = 5
    seeds: tuple[int, ...] = (0,)
    min_properties_beaten: int = 3


MIN_MODELS = 4


class TooFewModels(ValueError):
    """The zoo is too small to hold models out and still train on the rest."""


#: ``describe(training_models) -> {model: descriptor (D,)}`` for every model (training and held-out).
Describer = Callable[[Sequence[str]], Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class ModelProperties:
    """What the probes predict, per model (NaN / None where unknown; such a model is not scored)."""

    architecture: Mapping[str, str | None]
    source: Mapping[str, str | None]
    source_accuracy: Mapping[str, float]
    mean_transfer: Mapping[str, float]

    def value(self, prop: str, model: str) -> str | float | None:
        return getattr(self, prop).get(model)


@dataclass
class ProbeScores:
    """One describer's held-out scores: accuracy (categorical) or R^2 (numeric), and how many models."""

    scores: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


def model_folds(models: Sequence[str], n_folds: int, seed: int) -> list[list[str]]:
    """``n_folds`` disjoint held-out sets covering every model once (shuffled by ``seed``)."""
    order = np.random.default_rng(seed).permutation(sorted(models))
    return [sorted(order[i::n_folds].tolist()) for i in range(min(n_folds, len(order)))]


def _known(props: ModelProperties, prop: str, model: str) -> bool:
    value = props.value(prop, model)
    return value is not None and not (isinstance(value, float) and np.isnan(value))


def probe(
    describers: Mapping[str, Describer],
    properties: ModelProperties,
    models: Sequence[str],
    *,
    n_folds: int = 5,
    seed: int = 0,
) -> dict[str, ProbeScores]:
    """Every describer probed on the same model folds; ``{describer: ProbeScores}``."""
    folds = model_folds(models, n_folds, seed)
    predictions: dict[str, dict[str, dict[str, object]]] = {name: {p: {} for p in PROPERTIES} for name in describers}
    for k, held_out in enumerate(folds):
        train = [m for m in models if m not in set(held_out)]
        for name, describe in describers.items():
            raw = describe(train)
            centred = _centre_by_architecture(raw, properties, train)
            for prop in PROPERTIES:
                descriptors = centred if prop == "source" else raw
                fitted = [m for m in train if _known(properties, prop, m)]
                x_train = np.stack([descriptors[m] for m in fitted])
                y_train = [properties.value(prop, m) for m in fitted]
                if prop in CATEGORICAL:
                    classes = set(y_train)
                    scored = [m for m in held_out if _known(properties, prop, m) and properties.value(prop, m) in classes]
                    if not scored:
                        continue
                    if len(classes) == 1:
                        predicted = [y_train[0]] * len(scored)
                    else:
                        clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
                        clf.fit(x_train, y_train)
                        predicted = clf.predict(np.stack([descriptors[m] for m in scored])).tolist()
                else:
                    scored = [m for m in held_out if _known(properties, prop, m)]
                    if not scored:
                        continue
                    reg = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))
                    reg.fit(x_train, np.asarray(y_train, dtype=np.float64))
                    # clipped to the training range: one far-out model (a large ImageNet network among
                    # small ones) must not turn a probe's R^2 into -100 by extrapolation
                    fitted_values = reg.predict(np.stack([descriptors[m] for m in scored]))
                    predicted = np.clip(fitted_values, min(y_train), max(y_train)).tolist()
                predictions[name][prop].update(zip(scored, predicted, strict=True))
        logger.info("probe fold %d/%d done (%d held-out models)", k + 1, len(folds), len(held_out))
    results: dict[str, ProbeScores] = {}
    for name, by_prop in predictions.items():
        out = ProbeScores()
        for prop, predicted in by_prop.items():
            scored = sorted(predicted)
            out.counts[prop] = len(scored)
            if not scored:
                out.scores[prop] = float("nan")
            elif prop in CATEGORICAL:
                out.scores[prop] = float(np.mean([predicted[m] == properties.value(prop, m) for m in scored]))
            else:
                truth = np.asarray([properties.value(prop, m) for m in scored], dtype=np.float64)
                out.scores[prop] = float(r2_score(truth, np.asarray([predicted[m] for m in scored], dtype=np.float64)))
        results[name] = out
    return results


def _centre_by_architecture(
    descriptors: Mapping[str, np.ndarray], properties: ModelProperties, train: Sequence[str]
) -> dict[str, np.ndarray]:
    """Each descriptor minus the mean of the *training* models of its architecture (the overall
    training mean where none): what is left is what differs between models of one architecture."""
    overall = np.mean([descriptors[m] for m in train], axis=0)
    by_arch: dict[object, list[np.ndarray]] = {}
    for m in train:
        by_arch.setdefault(properties.architecture.get(m), []).append(descriptors[m])
    means = {a: np.mean(v, axis=0) for a, v in by_arch.items()}
    return {m: d - means.get(properties.architecture.get(m), overall) for m, d in descriptors.items()}


def fixed_describer(descriptors: Mapping[str, np.ndarray]) -> Describer:
    """A describer that needs no training (trivial descriptors, random vectors)."""
    return lambda _train: descriptors


def random_descriptors(models: Sequence[str], dim: int, seed: int) -> dict[str, np.ndarray]:
    """A standard normal vector per model: the floor every descriptor must clear."""
    rng = np.random.default_rng(seed)
    return {m: rng.standard_normal(dim) for m in sorted(models)}


def model_properties(cards: Mapping[str, ModelCard], ranks: pd.DataFrame | None) -> ModelProperties:
    """The probed properties from the models' cards (architecture, source task, source accuracy) and
    the ground-truth frame (``model_key``, ``accuracy``: a model's mean accuracy over its datasets)."""
    mean = ranks.groupby("model_key")["accuracy"].mean().to_dict() if ranks is not None and len(ranks) else {}
    return ModelProperties(
        architecture={m: c.architecture for m, c in cards.items()},
        source={m: c.source_task for m, c in cards.items()},
        source_accuracy={m: float("nan") if c.source_accuracy is None else float(c.source_accuracy) for m, c in cards.items()},
        mean_transfer={m: float(mean.get(m, float("nan"))) for m in cards},
    )


def embedder_describer(
    parameters: Mapping[str, ModelParameters],
    training: WeightEmbedderConfig,
    embedding: EmbeddingConfig | None = None,
    corpus: Corpus | None = None,
) -> Describer:
    """Trains the weight embedder on the training models' weights only (all of them: the fold already
    holds models out, so the embedder's own validation split is set to none), plus the ``corpus``
    weights of those training models only (a held-out model's run stays unseen), then embeds every model."""
    embedding = embedding or EmbeddingConfig()
    training = replace(training, tokens=replace(training.tokens, val_fraction=0.0),
                       chunks=replace(training.chunks, val_fraction=0.0))

    def describe(train: Sequence[str]) -> dict[str, np.ndarray]:
        artifact, _ = train_embedder({m: parameters[m] for m in train}, training,
                                     corpus={m: corpus[m] for m in train if m in corpus} if corpus else None)
        return {m: embed(p, artifact, embedding).token for m, p in parameters.items()}

    return describe


def trivial_describers(parameters: Mapping[str, ModelParameters], seed: int = 0) -> dict[str, Describer]:
    """The bars: ``weight_statistics`` (counts + per-depth tensor statistics), ``counts`` (its first two
    columns: log parameter and tensor counts) and ``random`` (64 standard normal numbers per model)."""
    stats = {m: weight_statistics(p) for m, p in parameters.items()}
    return {
        "weight_statistics": fixed_describer(stats),
        "counts": fixed_describer({m: v[:2] for m, v in stats.items()}),
        "random": fixed_describer(random_descriptors(list(parameters), 64, seed)),
    }


TRIVIAL = ("weight_statistics", "counts", "random")


def probe_frame(results: Mapping[str, ProbeScores], seed: int | None = None) -> pd.DataFrame:
    """One row per (describer, property): ``score`` (accuracy or R^2) and ``n`` models scored."""
    rows = [{"describer": name, "property": prop, "score": r.scores[prop], "n": r.counts[prop],
             "metric": "accuracy" if prop in CATEGORICAL else "R^2", **({} if seed is None else {"seed": seed})}
            for name, r in results.items() for prop in PROPERTIES]
    return pd.DataFrame(rows)


def beats_trivial(frame: pd.DataFrame, describer: str, trivial: Sequence[str] = TRIVIAL) -> dict[str, float]:
    """Per property, ``describer``'s mean score minus the best trivial describer's (positive: it beats them)."""
    means = frame.groupby(["describer", "property"])["score"].mean()
    return {prop: float(means[(describer, prop)] - max(means[(t, prop)] for t in trivial if (t, prop) in means))
            for prop in PROPERTIES if (describer, prop) in means}


def ceiling_ties(frame: pd.DataFrame, describer: str, trivial: Sequence[str] = TRIVIAL) -> list[str]:
    """The categorical properties where ``describer`` and the best trivial describer are both perfect
    (mean accuracy 1.0): nothing can beat a trivial descriptor there, so they count as matched."""
    means = frame.groupby(["describer", "property"])["score"].mean()
    return [prop for prop in CATEGORICAL if (describer, prop) in means and means[(describer, prop)] >= 1.0
            and max(means[(t, prop)] for t in trivial if (t, prop) in means) >= 1.0]


def probe_verdict(frame: pd.DataFrame, describer: str, required: int, trivial: Sequence[str] = TRIVIAL) -> dict:
    """What the check reads: per-property margins over the best trivial describer, the properties beaten,
    those tied at the ceiling, and ``passed``: beaten + ceiling ties >= ``required``."""
    margins = beats_trivial(frame, describer, trivial)
    beaten = sorted(p for p, m in margins.items() if m > 0)
    tied = sorted(p for p in ceiling_ties(frame, describer, trivial) if p not in beaten)
    return {"margins": margins, "beaten": beaten, "ceiling_ties": tied, "passed": len(beaten) + len(tied) >= required}


def probe_markdown(frame: pd.DataFrame) -> str:
    """The probe table: a row per describer, a column per property (mean ± std over seeds when several)."""
    stats = frame.groupby(["describer", "property"])["score"].agg(["mean", "std", "count"])
    order = list(dict.fromkeys(frame["describer"]))
    header = "| describer | " + " | ".join(f"{p} ({'acc' if p in CATEGORICAL else 'R^2'})" for p in PROPERTIES) + " |"
    lines = [header, "|" + " --- |" * (len(PROPERTIES) + 1)]
    for name in order:
        cells = []
        for prop in PROPERTIES:
            if (name, prop) not in stats.index:
                cells.append("")
                continue
            row = stats.loc[(name, prop)]
            cells.append(f"{row['mean']:+.3f}" + (f" ± {row['std']:.3f}" if row["count"] > 1 else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_probes(
    parameters: Mapping[str, ModelParameters],
    properties: ModelProperties,
    training: WeightEmbedderConfig,
    config: ProbeConfig,
    embedding: EmbeddingConfig | None = None,
    extra: Mapping[str, Callable[[int], Describer]] | None = None,
) -> pd.DataFrame:
    """The probe table of the ``embedding`` describer (the embedder ``training`` configures, retrained per
    fold and seed), the trivial describers and any ``extra`` ones (``{name: seed -> describer}``), over
    ``config.seeds``: :func:`probe_frame` rows with a ``seed`` column."""
    models = sorted(parameters)
    if len(models) < MIN_MODELS:
        raise TooFewModels(f"probes need at least {MIN_MODELS} models (each fold trains on the others), got {len(models)}")
    frames = []
    for seed in config.seeds:
        describers = {"embedding": embedder_describer(parameters, training.with_seed(seed), embedding),
                      **{name: make(seed) for name, make in (extra or {}).items()},
                      **trivial_describers(parameters, seed)}
        frames.append(probe_frame(probe(describers, properties, models, n_folds=config.n_folds, seed=seed), seed))
    return pd.concat(frames, ignore_index=True)
