"""Weight tokens: rows of tensors cut exactly, network order, the trivial descriptor computed independently."""

import math

import numpy as np
import torch

from ml_core.weights import (
    StateDictReader,
    model_tokens,
    network_order,
    read_model_parameters,
    weight_statistics,
    write_model_parameters,
)
from ml_core.weights.flatten import TensorEntry
from ml_core.weights.token_encoder import model_token_count
from ml_core.weights.weight_tokens import POSITION_FEATURES, ROLES, tensor_role


def _stored(tmp_path, state_dict, chunk_size=128):
    write_model_parameters(StateDictReader(tmp_path / "m.pt", state_dict), tmp_path / "m", chunk_size=chunk_size)
    return read_model_parameters(tmp_path / "m")


def _state_dict():
    g = torch.Generator().manual_seed(0)
    return {
        "stem.0.weight": torch.randn(8, 3, 3, 3, generator=g),  # 8 rows of 27: one token each
        "stem.1.running_mean": torch.randn(8, generator=g),
        "blocks.10.fc.weight": torch.randn(5, 100, generator=g) * 3,  # 5 rows of 100: two tokens each
        "blocks.2.fc.bias": torch.randn(5, generator=g),
        "head.weight": torch.randn(4, 5, generator=g),
        "num_batches_tracked": torch.tensor(3),  # skipped by the flattening
    }


def test_network_order_puts_stem_first_head_last_and_numbers_as_numbers():
    names = ["blocks.10.fc.weight", "blocks.2.fc.bias", "head.weight", "stem.0.weight", "_fc.weight", "_conv_stem.weight"]
    entries = [TensorEntry(n, (1,), "float32", i, 1) for i, n in enumerate(names)]
    assert [e.name for e in network_order(entries)] == [
        "_conv_stem.weight", "stem.0.weight", "blocks.2.fc.bias", "blocks.10.fc.weight", "_fc.weight", "head.weight"]


def test_tokens_are_rows_cut_into_pieces_and_undo_exactly(tmp_path):
    sd = _state_dict()
    params = _stored(tmp_path, sd)
    parts = list(model_tokens(params, token_size=64))
    order = [e.name for e in network_order(params.index.entries)]
    assert order[0] == "stem.0.weight" and order[-1] == "head.weight"
    assert sum(len(p) for p in parts) == model_token_count(params, 64)
    rms_col = POSITION_FEATURES.index("log_rms")
    for name, tokens in zip(order, parts, strict=True):
        tensor = sd[name].numpy()
        rows = tensor.reshape(1, -1) if tensor.ndim == 1 else tensor.reshape(tensor.shape[0], -1)
        pieces = math.ceil(rows.shape[1] / 64)
        assert len(tokens) == rows.shape[0] * pieces
        # values x RMS (from the log-RMS feature) give back each row, piece by piece; padding is 0 and masked out
        rms = 10 ** (tokens.positions[:, rms_col] * 4.0)
        restored = (tokens.values * rms[:, None]).reshape(rows.shape[0], pieces * 64)
        np.testing.assert_allclose(restored[:, : rows.shape[1]], rows, rtol=1e-4, atol=1e-6)
        assert not tokens.values[~tokens.mask].any()
        assert tokens.mask.reshape(rows.shape[0], -1).sum(1).tolist() == [rows.shape[1]] * rows.shape[0]
        real = np.where(tokens.mask, tokens.values, 0.0)
        np.testing.assert_allclose((real**2).sum(1) / tokens.mask.sum(1), 1.0, rtol=1e-4)  # unit RMS
        role = tensor_role(next(e for e in params.index.entries if e.name == name))
        assert (tokens.positions[:, 1 + ROLES.index(role)] == 1).all()
    depths = [float(p.positions[0, 0]) for p in parts]
    assert depths == sorted(depths) and 0 < depths[0] < depths[-1] < 1


def test_weight_statistics_match_an_independent_computation(tmp_path):
    sd = _state_dict()
    params = _stored(tmp_path, sd)
    floats = {k: v for k, v in sd.items() if v.is_floating_point()}
    order = ["stem.0.weight", "stem.1.running_mean", "blocks.2.fc.bias", "blocks.10.fc.weight", "head.weight"]
    total = sum(v.numel() for v in floats.values())
    expected = [math.log10(total), math.log10(len(floats))]
    quartiles = [[] for _ in range(4)]
    seen = 0
    for name in order:
        v = floats[name].double().flatten()
        quartiles[min(int(4 * (seen + v.numel() / 2) / total), 3)].append(
            [v.mean().item(), v.std(unbiased=False).item(), v.pow(2).mean().sqrt().item()])
        seen += v.numel()
    for rows in quartiles:
        expected.extend(np.mean(rows, axis=0).tolist() if rows else [0.0, 0.0, 0.0])
    np.testing.assert_allclose(weight_statistics(params), expected, rtol=1e-5, atol=1e-7)
