"""The weight embedder's extra corpus: found per model, flattened once, used only beside its own model."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from ml_core.trainer import TrainerConfig
from ml_core.weights import (
    CorpusError,
    StateDictReader,
    TokenEncoderConfig,
    TokenEncoderTrainingConfig,
    WeightEmbedderConfig,
    discover_corpus,
    embed,
    flatten_corpus,
    read_model_parameters,
    split_models,
    train_embedder,
    with_corpus,
    write_model_parameters,
)
from ml_core.weights.autoencoder import AutoEncoderConfig, AutoEncoderTrainingConfig

SMALL = TokenEncoderConfig(token_size=16, window=8, d_model=16, n_layers=1, n_heads=2, ff_dim=32, code_dim=8, latent_dim=4)
TRAINING = WeightEmbedderConfig(
    tokens=TokenEncoderTrainingConfig(model=SMALL, trainer=TrainerConfig(epochs=2, lr=3e-3, scheduler="none",
                                                                         early_stopping_patience=None),
                                      batch_size=4, steps_per_epoch=3, val_steps=2, max_tokens_per_model=256),
    chunks=AutoEncoderTrainingConfig(model=AutoEncoderConfig(input_dim=64, hidden_dim=16, code_dim=4),
                                     trainer=TrainerConfig(epochs=2, scheduler="none", early_stopping_patience=None)),
)


def _state(seed: int, width: int = 8) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"stem.weight": torch.randn(width, 3, 3, 3, generator=g), "head.weight": torch.randn(4, width, generator=g),
            "head.bias": torch.randn(4, generator=g)}


def _params(tmp_path, name: str, seed: int):
    write_model_parameters(StateDictReader(tmp_path / f"{name}.pt", _state(seed)), tmp_path / name, chunk_size=64)
    return read_model_parameters(tmp_path / name)


def _corpus_folder(tmp_path):
    folder = tmp_path / "snapshots"
    for i, model in enumerate(("m0", "m1")):
        (folder / model).mkdir(parents=True)
        for epoch in (1, 2):
            save_file(_state(100 * i + epoch), str(folder / model / f"{model}_epoch{epoch:02d}.safetensors"))
            (folder / model / f"{model}_epoch{epoch:02d}.json").write_text(json.dumps({"snapshot_of": model}))
    return folder


def test_with_corpus_keeps_a_run_on_its_models_side():
    models = {"a": "A", "b": "B", "c": "C"}
    out, keys, runs = with_corpus(models, ["a", "c"], {"a": ["a1", "a2"], "b": ["b1"]})
    assert list(out.values()) == ["A", "C", "a1", "a2"] and keys == list(out) and runs == ["a", "c", "a", "a"]
    assert keys[:2] == ["a", "c"] and not set(keys[2:]) & set(models)  # a corpus key is never a model's name
    assert with_corpus(models, ["b"], None) == ({"b": "B"}, ["b"], ["b"])


def test_discover_and_flatten_once(tmp_path):
    folder = _corpus_folder(tmp_path)
    found = discover_corpus(folder)
    assert {m: [p.name for p in paths] for m, paths in found.items()} == {
        "m0": ["m0_epoch01.safetensors", "m0_epoch02.safetensors"], "m1": ["m1_epoch01.safetensors", "m1_epoch02.safetensors"]}
    cache = tmp_path / "cache"
    flat = flatten_corpus(found, cache, chunk_size=64)
    assert [len(v) for v in flat.values()] == [2, 2]
    values = np.asarray(flat["m1"][1].chunks[:]).ravel()[: flat["m1"][1].index.total_values]
    expected = torch.cat([t.ravel() for _, t in sorted(_state(102).items())]).numpy()  # natural order: head.*, stem.*
    np.testing.assert_allclose(np.sort(values), np.sort(expected))
    stamps = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}
    flatten_corpus(found, cache, chunk_size=64)
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()} == stamps  # nothing rewritten
    assert not list(cache.rglob(".*partial"))


def test_bad_corpus_inputs_are_one_line_errors_naming_the_file(tmp_path):
    folder = _corpus_folder(tmp_path)
    card = folder / "m0" / "m0_epoch01.json"
    card.write_text(json.dumps({"snapshot_of": "m1"}))
    with pytest.raises(CorpusError, match=r"m0_epoch01\.json: snapshot_of is 'm1'"):
        discover_corpus(folder)
    card.write_text(json.dumps({"snapshot_of": "m0"}))

    (folder / "loose.safetensors").write_bytes(b"")
    with pytest.raises(CorpusError, match=r"loose\.safetensors: a corpus checkpoint must lie in a folder"):
        discover_corpus(folder)
    (folder / "loose.safetensors").unlink()

    broken = folder / "m1" / "m1_epoch03.safetensors"
    broken.write_bytes(b"not a safetensors file")
    cache = tmp_path / "cache"
    with pytest.raises(CorpusError, match=r"m1_epoch03\.safetensors"):
        flatten_corpus(discover_corpus(folder), cache, chunk_size=64)
    assert not list(cache.rglob("*m1_epoch03*"))  # nothing half-written left behind
    with pytest.raises(CorpusError, match="corpus folder not found"):
        discover_corpus(tmp_path / "nowhere")


@pytest.mark.parametrize("method", ["token_encoder", "chunk_autoencoder"])
def test_the_embedder_trains_on_the_corpus_of_its_training_models_only(tmp_path, method):
    models = {f"m{i}": _params(tmp_path, f"m{i}", i) for i in range(5)}
    corpus = {m: [_params(tmp_path, f"{m}_s{k}", 50 + 10 * i + k) for k in range(3)] for i, m in enumerate(models)}
    config = WeightEmbedderConfig(method=method, tokens=TRAINING.tokens, chunks=TRAINING.chunks)
    train, val = split_models(list(models), config.tokens.val_fraction, config.tokens.seed)
    assert val  # the split holds models out, so the corpus of a held-out model exists and must stay unused

    plain, _ = train_embedder(models, config)
    with_extra, _ = train_embedder(models, config, corpus=corpus)
    assert with_extra.info["train_models"] == plain.info["train_models"] == train
    assert with_extra.info["val_models"] == val and plain.info.get("n_corpus_models", 0) == 0
    assert with_extra.info["n_corpus_models"] == 3 * len(train)  # the held-out models' runs are not counted in
    # the held-out figure is over the held-out models alone either way: the corpus reaches training only
    assert with_extra.info["eval_split"] == "val"
    token = embed(models["m0"], with_extra).token
    assert np.isfinite(token).all() and not np.allclose(token, embed(models["m0"], plain).token)

    # a held-out model's own run changes nothing: it never reaches training
    only_val = {m: corpus[m] for m in val}
    again, _ = train_embedder(models, config, corpus=only_val)
    assert again.info["n_corpus_models"] == 0
    np.testing.assert_allclose(embed(models["m0"], again).token, embed(models["m0"], plain).token)


def test_a_runs_other_checkpoints_can_be_left_out_of_its_negatives():
    from ml_core.weights.token_encoder import nt_xent

    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 8, generator=g)
    b = a + 0.1 * torch.randn(4, 8, generator=g)
    a[1], b[1] = a[0] + 0.01, b[0] + 0.01  # rows 0 and 1: two checkpoints of one run, nearly the same weights
    distinct, same = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 0, 2, 3])
    torch.testing.assert_close(nt_xent(a, b, 0.1, distinct), nt_xent(a, b, 0.1))  # no shared run: plain NT-Xent
    # as negatives, the near-duplicate rows make each other's positive hard to pick; left out, they do not
    assert nt_xent(a, b, 0.1, same) < nt_xent(a, b, 0.1) - 0.3


def test_the_sampler_labels_each_window_with_its_run(tmp_path):
    from ml_core.weights.token_encoder import WindowSampler, token_samples

    models = {f"m{i}": _params(tmp_path, f"m{i}", i) for i in range(2)}
    corpus = {"m0": [_params(tmp_path, "m0_s", 7)], "m1": [_params(tmp_path, "m1_s", 8)]}
    config = TRAINING.tokens
    found, keys, runs = with_corpus(models, ["m0", "m1"], corpus)
    samples, _ = token_samples(found, keys, config, np.random.default_rng(0))
    sampler = WindowSampler(samples, config, 2, 0, runs=[["m0", "m1"].index(r) for r in runs])
    batch = next(iter(sampler))
    assert sorted(batch["run"].tolist()) == [0, 0, 1, 1]  # all four samples drawn, each with its run


def test_run_views_pair_a_window_with_another_checkpoint_of_its_run(tmp_path):
    import dataclasses

    from ml_core.weights.token_encoder import WindowSampler, token_samples

    models = {"m0": _params(tmp_path, "m0", 0)}
    corpus = {"m0": [_params(tmp_path, f"m0_s{k}", 10 + k) for k in range(3)]}
    found, keys, runs = with_corpus(models, ["m0"], corpus)

    def second_views(views: str) -> set[bytes]:
        config = dataclasses.replace(TRAINING.tokens, corpus_views=views, noise_std=0.0, token_dropout=0.0,
                                     batch_size=1, view_distance=0)
        samples, _ = token_samples(found, keys, config, np.random.default_rng(0))
        sampler = WindowSampler(samples, config, 40, 0, runs=[0] * len(runs))
        w = config.model.window
        # every window of every sample, as its sorted values (the row-shuffle view reorders tokens, not values)
        where = {np.sort(smp.values[start : start + w], axis=None).tobytes(): k
                 for k, smp in enumerate(samples) for start in range(len(smp) - w + 1)}
        pairs = set()
        for batch in sampler:
            a, b = (np.sort(batch[f"values{v}"][0].numpy(), axis=None).tobytes() for v in (0, 1))
            pairs.add((where[a], where[b]))
        return pairs

    assert all(i == j for i, j in second_views("checkpoint"))  # a view's twin is from its own checkpoint
    assert any(i != j for i, j in second_views("run"))  # with run views, from another checkpoint of the run
