"""Probes on held-out models: they find what a descriptor carries, never let a fold see its held-out models."""

import numpy as np
import pandas as pd
import pytest

from ml_core.evaluation.probes import (
    ModelProperties,
    beats_trivial,
    embedder_describer,
    fixed_describer,
    model_folds,
    model_properties,
    probe,
    probe_frame,
    probe_markdown,
    probe_verdict,
    random_descriptors,
)
from ml_core.weights import ModelCard, WeightEmbedderConfig

ARCHS = ("cnn", "resnet", "vit")
SOURCES = ("digits", "shapes", "textures", "photos")


def _zoo():
    rng = np.random.default_rng(0)
    models, arch, source, acc, transfer = [], {}, {}, {}, {}
    for a in ARCHS:
        for s in SOURCES:
            m = f"{a}_{s}"
            models.append(m)
            arch[m], source[m] = a, s
            acc[m] = 0.5 + 0.1 * ARCHS.index(a) + 0.05 * rng.standard_normal()
            transfer[m] = 0.3 + 0.05 * SOURCES.index(s) + 0.1 * ARCHS.index(a)
    return models, ModelProperties(arch, source, acc, transfer)


def _informative(models, props, noise=0.01, seed=0):
    """One-hot architecture and source, and both numbers, plus a little noise: everything a probe needs."""
    rng = np.random.default_rng(seed)
    out = {}
    for m in models:
        vec = [float(props.architecture[m] == a) for a in ARCHS] + [float(props.source[m] == s) for s in SOURCES]
        vec += [props.source_accuracy[m], props.mean_transfer[m]]
        out[m] = np.asarray(vec) + noise * rng.standard_normal(len(vec))
    return out


def test_folds_cover_every_model_once():
    folds = model_folds([f"m{i}" for i in range(11)], 5, seed=3)
    flat = [m for f in folds for m in f]
    assert sorted(flat) == sorted(f"m{i}" for i in range(11)) and len(folds) == 5


def test_probes_find_what_a_descriptor_carries_and_random_finds_nothing():
    models, props = _zoo()
    results = probe({"informative": fixed_describer(_informative(models, props)),
                     "random": fixed_describer(random_descriptors(models, 16, seed=1))}, props, models, n_folds=4)
    good, rand = results["informative"].scores, results["random"].scores
    assert good["architecture"] == 1.0 and good["source"] > rand["source"] + 0.3
    assert good["source_accuracy"] > 0.8 and good["mean_transfer"] > 0.8
    assert rand["architecture"] < 0.7 and rand["source_accuracy"] < 0.3 and rand["mean_transfer"] < 0.3
    assert results["informative"].counts["architecture"] == len(models)


def test_describer_never_sees_the_held_out_models():
    models, props = _zoo()
    seen_by_fold = []

    def describe(train):
        seen_by_fold.append(set(train))
        return _informative(models, props)

    probe({"spy": describe}, props, models, n_folds=4, seed=0)
    folds = model_folds(models, 4, seed=0)
    assert [set(models) - s for s in seen_by_fold] == [set(f) for f in folds]


def test_embedder_describer_trains_on_the_training_models_only(monkeypatch):
    import ml_core.evaluation.probes as probes

    trained_on = []

    def fake_train(models, config, corpus=None):
        trained_on.append((sorted(models), config.tokens.val_fraction, corpus))
        return "artifact", None

    monkeypatch.setattr(probes, "train_embedder", fake_train)
    monkeypatch.setattr(probes, "embed", lambda params, artifact, config: type("E", (), {"token": np.ones(2)})())
    describe = embedder_describer({"a": 1, "b": 2, "c": 3}, WeightEmbedderConfig())
    out = describe(["a", "c"])
    # trained on the fold's training models, all of them (the fold holds out); every model embedded
    assert trained_on == [(["a", "c"], 0.0, None)] and sorted(out) == ["a", "b", "c"]

    # with a corpus: only the training models' runs reach the embedder; the held-out b's never does
    trained_on.clear()
    describe = embedder_describer({"a": 1, "b": 2, "c": 3}, WeightEmbedderConfig(),
                                  corpus={"a": ["a@1", "a@2"], "b": ["b@1"]})
    out = describe(["a", "c"])
    assert trained_on == [(["a", "c"], 0.0, {"a": ["a@1", "a@2"]})] and sorted(out) == ["a", "b", "c"]


def test_source_probe_is_centred_per_architecture():
    """Every architecture trained on every source: a held-out model's architecture-mates all have other
    sources. A descriptor = architecture offset + a small source signal names the source only centred."""
    models, props = _zoo()
    rng = np.random.default_rng(0)
    arch_offset = {a: 10 * rng.standard_normal(4) for a in ARCHS}
    source_dir = {s: np.eye(4)[i] for i, s in enumerate(SOURCES)}
    desc = {m: arch_offset[props.architecture[m]] + 0.5 * source_dir[props.source[m]] for m in models}
    assert probe({"d": fixed_describer(desc)}, props, models, n_folds=4)["d"].scores["source"] == 1.0


def test_margins_and_table():
    models, props = _zoo()
    results = probe({"embedding": fixed_describer(_informative(models, props)),
                     "random": fixed_describer(random_descriptors(models, 8, 0))}, props, models, n_folds=3)
    frame = pd.concat([probe_frame(results, seed=0), probe_frame(results, seed=1)])
    margins = beats_trivial(frame, "embedding", trivial=("random",))
    assert set(margins) == {"architecture", "source", "source_accuracy", "mean_transfer"}
    expected = results["embedding"].scores["architecture"] - results["random"].scores["architecture"]
    assert margins["architecture"] == pytest.approx(expected)
    table = probe_markdown(frame)
    assert table.count("\n") == 3 and "± 0.000" in table and table.splitlines()[2].startswith("| embedding |")


def test_properties_from_cards_and_ground_truth():
    cards = {"a": ModelCard(name="a", architecture="smallcnn", source_task="digits", source_accuracy=0.9),
             "b": ModelCard(name="b", architecture="tinyvit")}
    ranks = pd.DataFrame({"model_key": ["a", "a", "b"], "dataset_key": ["x", "y", "x"], "accuracy": [0.2, 0.4, 0.7]})
    props = model_properties(cards, ranks)
    assert props.architecture == {"a": "smallcnn", "b": "tinyvit"} and props.source["b"] is None
    assert props.mean_transfer == pytest.approx({"a": 0.3, "b": 0.7})
    assert props.source_accuracy["a"] == 0.9 and np.isnan(props.source_accuracy["b"])


def test_verdict_counts_beaten_properties_and_ties_at_the_ceiling():
    def frame(rows):
        return pd.DataFrame([{"describer": d, "property": p, "score": s} for d, p, s in rows])

    rows = [("embedding", "architecture", 1.0), ("weight_statistics", "architecture", 1.0),
            ("embedding", "source", 0.2), ("weight_statistics", "source", 0.25),
            ("embedding", "source_accuracy", 0.1), ("weight_statistics", "source_accuracy", -0.2),
            ("embedding", "mean_transfer", 0.3), ("weight_statistics", "mean_transfer", 0.1)]
    verdict = probe_verdict(frame(rows), "embedding", 3, trivial=("weight_statistics",))
    assert verdict["beaten"] == ["mean_transfer", "source_accuracy"] and verdict["ceiling_ties"] == ["architecture"]
    assert verdict["passed"] and verdict["margins"]["source"] == pytest.approx(-0.05)
    rows[0] = ("embedding", "architecture", 0.96)  # below a perfect trivial descriptor: not matched
    assert not probe_verdict(frame(rows), "embedding", 3, trivial=("weight_statistics",))["passed"]


def test_a_zoo_too_small_to_hold_models_out_is_refused_by_name():
    from ml_core.evaluation.probes import ProbeConfig, TooFewModels, run_probes

    models, props = _zoo()
    with pytest.raises(TooFewModels, match="at least 4 models"):
        run_probes({m: None for m in models[:3]}, props, WeightEmbedderConfig(), ProbeConfig())
