"""benchmarks.scale: its measurements on tiny timm models (random weights, built locally, nothing downloaded)."""

import numpy as np
import pytest
import torch

from benchmarks.scale import (
    add_one_ratio,
    build_standin,
    build_zoo_model,
    embed_seconds,
    embedder_config,
    flatten_in_process,
    float_values,
    growth_exponent,
    largest_float_tensor,
    memory_bound,
    save_checkpoint,
    sequential_read_seconds,
    throughput_ratio,
    train_measure,
)
from ml_core.weights import load_embedder


def test_a_standin_flattens_to_every_float_value_it_has_in_both_formats(tmp_path):
    state = build_standin("test_resnet", 0)
    assert all(torch.equal(a, b) for a, b in zip(state.values(), build_standin("test_resnet", 0).values(), strict=True))
    assert not torch.equal(next(iter(state.values())), next(iter(build_standin("test_resnet", 1).values())))
    n_float = sum(t.numel() for t in state.values() if t.dtype.is_floating_point)
    n_int = sum(not t.dtype.is_floating_point for t in state.values())  # BatchNorm's num_batches_tracked
    assert float_values(state) == n_float and n_int > 0
    assert memory_bound(largest_float_tensor(state)) == 4 * max(t.numel() for t in state.values()) + 4 * 64 * 8192
    hashes = []
    for suffix in (".safetensors", ".pt"):
        path = save_checkpoint(state, tmp_path / f"model{suffix}")
        seconds, summary = flatten_in_process(path, tmp_path / f"params{suffix}")
        assert summary.total_values == n_float and summary.n_skipped == n_int
        assert summary.n_chunks == -(-n_float // 8192)
        hashes.append(summary.content_hash)
        read = sequential_read_seconds(path)
        assert read > 0 and seconds > 0
        assert throughput_ratio(read, seconds) == pytest.approx(read / seconds)
    assert hashes[0] == hashes[1]  # the same weights in either format flatten to the same chunks


def test_zoo_training_and_embedding_measurements(tmp_path):
    zoo = [build_zoo_model(i, ("test_resnet", "test_vit"), tmp_path) for i in range(3)]
    assert [m.architecture for m in zoo] == ["test_resnet", "test_vit", "test_resnet"]
    assert zoo[0].n_values == zoo[2].n_values and zoo[0].params_dir != zoo[2].params_dir
    assert not list((tmp_path / "zoo_checkpoints").iterdir())  # checkpoints deleted once flattened
    changes = embedder_config("chunk_autoencoder", 1, max_total_chunks=20, max_total_tokens=None)
    result = train_measure([m.params_dir for m in zoo], changes, tmp_path / "embedder")
    assert result["method"] == "chunk_autoencoder" and result["n_models"] == 3
    assert 3 <= result["sample"] <= 20  # within the budget, at least a chunk of each model
    assert result["peak_hwm_bytes"] >= result["peak_anon_bytes"] > 0
    seconds, pieces = embed_seconds(zoo[1].params_dir, load_embedder(tmp_path / "embedder"))
    assert seconds > 0 and pieces == zoo[1].n_chunks


def test_ratios_come_from_the_measured_numbers():
    assert add_one_ratio([1.0, 2.0, 3.0, 4.0], 0.5) == pytest.approx(0.05)
    sizes = [1e6, 1e7, 1e8]
    assert growth_exponent(sizes, [0.1 * (s / 1e6) ** 0.8 for s in sizes]) == pytest.approx(0.8)
    assert np.isnan(growth_exponent([1e6], [1.0]))
