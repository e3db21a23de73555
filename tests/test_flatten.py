"""Flattening: whole network, stable order, exact round trip, streaming, integer buffers skipped."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from ml_core.weights import (
    StateDictReader,
    flatten_checkpoint,
    open_checkpoint,
    plan_flatten,
    read_model_parameters,
    unflatten,
    write_model_parameters,
)


def _mixed_state_dict() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "conv1.weight": torch.randn(16, 3, 3, 3, generator=g),
        "bn1.weight": torch.rand(16, generator=g).half(),
        "bn1.running_mean": torch.randn(16, generator=g).to(torch.bfloat16),
        "bn1.num_batches_tracked": torch.tensor(7),
        "layer.10.weight": torch.randn(300, 40, generator=g),
        "layer.2.weight": torch.randn(50, 50, generator=g),
        "head.weight": torch.randn(10, 64, generator=g),
        "head.index": torch.arange(5, dtype=torch.int32),
    }


def _collect(reader, chunk_size=1000, block_rows=3):
    rows = {}

    def sink(first, block):
        for i, row in enumerate(block):
            rows[first + i] = row.copy()

    index, digest = flatten_checkpoint(reader, sink, chunk_size=chunk_size, block_rows=block_rows)
    array = np.stack([rows[i] for i in range(len(rows))])
    return index, digest, array


def test_round_trip_is_exact_and_covers_every_float_tensor(tmp_path):
    sd = _mixed_state_dict()
    index, _, array = _collect(StateDictReader(tmp_path / "x.pt", sd))
    float_names = {k for k, v in sd.items() if v.dtype.is_floating_point}
    assert {e.name for e in index.entries} == float_names
    assert index.total_values == sum(sd[k].numel() for k in float_names)
    assert array.shape == (index.n_chunks, 1000)
    back = unflatten(array, index)
    for name in float_names:
        assert back[name].dtype == sd[name].dtype
        assert torch.equal(back[name], sd[name]), name
    # the padding after the last value is zero and the valid length says where it starts
    lengths = index.valid_lengths()
    assert lengths[-1] == index.total_values - 1000 * (index.n_chunks - 1)
    assert not array[-1, lengths[-1] :].any()


def test_integer_buffers_are_skipped_and_recorded(tmp_path):
    index, _, _ = _collect(StateDictReader(tmp_path / "x.pt", _mixed_state_dict()))
    skipped = {s.name: s.reason for s in index.skipped}
    assert set(skipped) == {"bn1.num_batches_tracked", "head.index"}
    assert all("integer" in r for r in skipped.values())


def test_order_is_natural_and_format_independent(tmp_path):
    sd = _mixed_state_dict()
    save_file({k: v.contiguous() for k, v in sd.items()}, tmp_path / "m.safetensors")
    torch.save(sd, tmp_path / "m.pt")
    with open_checkpoint(tmp_path / "m.safetensors") as st, open_checkpoint(tmp_path / "m.pt") as pt:
        a = _collect(st)
        b = _collect(pt)
    names = [e.name for e in a[0].entries]
    assert names.index("layer.2.weight") < names.index("layer.10.weight")
    assert a[1] == b[1]  # same content hash from both formats
    np.testing.assert_array_equal(a[2], b[2])


def test_float64_is_kept_exact(tmp_path):
    sd = {"w": torch.randn(5000, dtype=torch.float64), "b": torch.randn(3)}
    index, _, array = _collect(StateDictReader(tmp_path / "x.pt", sd))
    assert index.chunk_dtype == "float64"
    back = unflatten(array, index)
    assert torch.equal(back["w"], sd["w"]) and torch.equal(back["b"], sd["b"])


class _CountingReader(StateDictReader):
    """Records how many tensors are alive at once through the reader (streaming check)."""

    def __init__(self, path, sd):
        super().__init__(path, sd)
        self.reads = []

    def get(self, name):
        self.reads.append(name)
        return super().get(name)


def test_streaming_reads_each_tensor_once_and_emits_bounded_blocks(tmp_path):
    sd = {f"layer.{i}.weight": torch.randn(4000) for i in range(40)}
    reader = _CountingReader(tmp_path / "x.pt", sd)
    sizes = []

    def sink(first, block):
        sizes.append(block.shape[0])

    index, _ = flatten_checkpoint(reader, sink, chunk_size=1024, block_rows=4)
    assert reader.reads == [e.name for e in index.entries]  # one pass, in order, once each
    assert max(sizes) <= 4 and sum(sizes) == index.n_chunks


def test_zarr_group_round_trip(tmp_path):
    sd = _mixed_state_dict()
    summary = write_model_parameters(StateDictReader(tmp_path / "x.pt", sd), tmp_path / "g", chunk_size=512, block_rows=2)
    stored = read_model_parameters(tmp_path / "g")
    assert stored.chunks.shape == (summary.n_chunks, 512)
    assert stored.valid_mask().sum() == summary.total_values
    back = unflatten(stored.chunks, stored.index)
    assert all(torch.equal(back[k], sd[k]) for k in back)


def test_plan_refuses_nothing_to_embed(tmp_path):
    from ml_core.weights import CheckpointError

    reader = StateDictReader(tmp_path / "ints.pt", {"n": torch.tensor(3), "idx": torch.arange(4)})
    assert plan_flatten(reader.tensor_infos()).entries == []
    with pytest.raises(CheckpointError, match="no floating-point tensors"):
        flatten_checkpoint(reader, lambda *_: None)
