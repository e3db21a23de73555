"""Untrusted and broken checkpoints: refused without running code, clear errors, exact round trips.

Extends tests/test_checkpoints.py (one evil pickle, one truncated safetensors) and
tests/test_flatten.py (fp16/bf16 round trip in memory): here every pickle variant, every kind of
safetensors corruption, fp8 and special values through the zarr artifact, unusual containers,
duplicate checkpoints and failures seen through the ``model_parameters`` asset.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from dagster import DagsterInstance
from safetensors.torch import save_file

from assets.shared.loaders import PARAMS_DIR
from assets.model_parameters import model_parameters
from ml_core.artifacts import partition_key, read_json, read_manifest
from ml_core.weights import CheckpointError, open_checkpoint, read_model_parameters, unflatten, write_model_parameters
from tests.test_robustness_helpers import (
    failure_text,
    materialize_partition,
    metadata_of,
    temporaries,
    zoo_resources,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _sd(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "conv.weight": torch.randn(8, 3, 3, 3, generator=g),
        "conv.bias": torch.randn(8, generator=g),
        "bn.num_batches_tracked": torch.tensor(5),
        "fc.weight": torch.randn(4, 8, generator=g),
    }


def _read_all(path: Path) -> dict[str, torch.Tensor]:
    with open_checkpoint(path) as reader:
        return {info.name: reader.get(info.name).clone() for info in reader.tensor_infos()}


# --- pickles that would run code ----------------------------------------------------------------


class _Payload:
    """Unpickling it writes a marker file (a harmless stand-in for arbitrary code)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def _hand_made_pickle(marker: Path) -> bytes:
    # protocol 0 opcodes: GLOBAL builtins.exec, the code string, TUPLE, REDUCE, STOP
    code = f"open({str(marker)!r}, 'w').write('pwned')"
    return b"cbuiltins\nexec\n(V" + code.encode() + b"\ntR."


def _zip_with_evil_data_pkl(path: Path, marker: Path) -> None:
    """A torch zip checkpoint whose data.pkl was swapped for a malicious one after saving."""
    torch.save({"w": torch.zeros(3)}, path)
    with zipfile.ZipFile(path) as original:
        members = {info.filename: original.read(info.filename) for info in original.infolist()}
    data_pkl = next(name for name in members if name.endswith("/data.pkl"))
    members[data_pkl] = pickle.dumps({"w": _Payload(marker)}, protocol=2)
    with zipfile.ZipFile(path, "w") as rewritten:
        for name, data in members.items():
            rewritten.writestr(name, data)


EVIL_VARIANTS = {
    "zip_pt": lambda p, m: torch.save({"w": torch.zeros(2), "x": _Payload(m)}, p.with_suffix(".pt")),
    "zip_bin": lambda p, m: torch.save({"w": torch.zeros(2), "x": _Payload(m)}, p.with_suffix(".bin")),
    "zip_ckpt_nested": lambda p, m: torch.save({"state_dict": {"w": torch.zeros(2)}, "hook": _Payload(m)},
                                                 p.with_suffix(".ckpt")),
    "legacy_pth": lambda p, m: torch.save({"w": _Payload(m)}, p.with_suffix(".pth"),
                                           _use_new_zipfile_serialization=False),
    "raw_pickle_protocol2_bin": lambda p, m: p.with_suffix(".bin").write_bytes(pickle.dumps(_Payload(m), protocol=2)),
    "raw_pickle_protocol5_pt": lambda p, m: p.with_suffix(".pt").write_bytes(pickle.dumps([_Payload(m)], protocol=5)),
    "hand_made_opcodes_pt": lambda p, m: p.with_suffix(".pt").write_bytes(_hand_made_pickle(m)),
    "zip_swapped_data_pkl_pt": lambda p, m: _zip_with_evil_data_pkl(p.with_suffix(".pt"), m),
}


@pytest.mark.parametrize("variant", sorted(EVIL_VARIANTS))
def test_every_code_running_pickle_is_refused_without_running(tmp_path, variant):
    marker = tmp_path / "PWNED"
    EVIL_VARIANTS[variant](tmp_path / "evil", marker)
    [path] = [p for p in tmp_path.iterdir() if p.name.startswith("evil")]
    with pytest.raises(CheckpointError, match="never unpickled") as caught:
        open_checkpoint(path)
    assert str(path) in str(caught.value)
    assert not marker.exists(), "the payload ran"
    # the payload is real: a full unpickle would have run it
    if variant.startswith(("raw", "hand")):
        pickle.loads(path.read_bytes())
        assert marker.exists()


def test_torchscript_archive_and_harmless_foreign_classes_are_refused(tmp_path):
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(tmp_path / "scripted.pt"))
    with pytest.raises(CheckpointError, match=r"scripted\.pt.*TorchScript"):
        open_checkpoint(tmp_path / "scripted.pt")
    # old training scripts pickled argparse.Namespace: not code, but not allow-listed either
    torch.save({"state_dict": _sd(), "args": argparse.Namespace(lr=0.1)}, tmp_path / "old.pth")
    with pytest.raises(CheckpointError, match=r"old\.pth: refused to load"):
        open_checkpoint(tmp_path / "old.pth")


def test_a_pickle_named_safetensors_is_never_unpickled(tmp_path):
    marker = tmp_path / "PWNED"
    (tmp_path / "m.safetensors").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError, match=r"m\.safetensors: not a readable safetensors file"):
        open_checkpoint(tmp_path / "m.safetensors")
    assert not marker.exists()


# --- corrupted safetensors ------------------------------------------------------------------------


def _split_safetensors(path: Path) -> tuple[dict, bytes]:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def _join(header: dict | bytes, body: bytes) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def _edit(header: dict, name: str, **changes) -> dict:
    edited = json.loads(json.dumps(header))
    edited[name].update(changes)
    return edited


def _corruptions(good: Path) -> dict[str, bytes]:
    header, body = _split_safetensors(good)
    data = good.read_bytes()
    first, second = sorted(k for k in header if k != "__metadata__")[:2]
    return {
        "empty": b"",
        "only_4_bytes": data[:4],
        "header_length_beyond_file": struct.pack("<Q", 10**9) + data[8:],
        "header_not_utf8": _join(b"\xff\xfe" * 20, body),
        "header_not_json": _join(b"{not json" + b" " * 30, body),
        "header_a_json_list": _join(b"[1, 2, 3]", body),
        "offsets_beyond_data": _join(_edit(header, first, data_offsets=[0, len(body) * 10]), body),
        "offsets_too_short_for_shape": _join(_edit(header, first, data_offsets=[0, 4]), body),
        "overlapping_tensors": _join(_edit(header, second, data_offsets=header[first]["data_offsets"]), body),
        "unknown_dtype": _join(_edit(header, first, dtype="F99"), body),
        "negative_shape": _join(_edit(header, first, shape=[-1]), body),
        "body_truncated": data[:-37],
        "body_with_trailing_garbage": data + b"\x00" * 64,
        "random_bytes": np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    }


def test_every_safetensors_corruption_is_a_clear_error_naming_the_file(tmp_path):
    good = tmp_path / "good.safetensors"
    save_file(_sd(), good)
    corruptions = _corruptions(good)
    for name, data in corruptions.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(data)
        with pytest.raises(CheckpointError) as caught:
            _read_all(path)
        assert str(caught.value).startswith(str(path)), (name, str(caught.value))
    assert len(corruptions) == 14
    assert set(_read_all(good)) == set(_sd())  # the reader itself works


def test_file_truncated_after_opening_is_an_error_not_garbage(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file(_sd(), path)
    with open_checkpoint(path) as reader:
        last = reader.tensor_infos()[-1].name
        reader.get(last)
        with path.open("r+b") as handle:
            handle.truncate(path.stat().st_size - 16)
        with pytest.raises(CheckpointError, match=r"m\.safetensors.*cut short"):
            reader.get("fc.weight")  # the last tensor in the file's data


def test_safetensors_reads_are_fresh_buffers_not_views_of_the_file(tmp_path):
    """Tensors must not keep the file mapped (the bounded-memory claim relies on it)."""
    path = tmp_path / "m.safetensors"
    save_file(_sd(), path)
    with open_checkpoint(path) as reader:
        a = reader.get("fc.weight")
        b = reader.get("fc.weight")
    assert torch.equal(a, _sd()["fc.weight"])
    a.add_(1.0)  # writable and private: the second read is untouched
    assert torch.equal(b, _sd()["fc.weight"])


# --- dtypes, special values, exact round trips ------------------------------------------------------


def _special(dtype: torch.dtype) -> torch.Tensor:
    info = torch.finfo(dtype)
    values = [0.0, -0.0, 1.0, -2.5, info.max, -info.max, info.tiny, info.smallest_normal / 4, float("inf"),
              float("-inf"), float("nan")]
    if dtype == torch.float8_e4m3fn:  # no infinities in e4m3fn (inf saturates to nan)
        values = [v for v in values if abs(v) != float("inf")]
    return torch.tensor(values, dtype=torch.float64).to(dtype)


def _bits(t: torch.Tensor) -> torch.Tensor:
    width = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
    return t.contiguous().view(width)


@pytest.mark.parametrize("with_float64", [False, True])
def test_mixed_dtypes_with_special_values_round_trip_bit_exactly(tmp_path, with_float64):
    g = torch.Generator().manual_seed(3)
    sd = {
        "a.fp32": torch.cat([torch.randn(3000, generator=g), _special(torch.float32)]),
        "b.fp16": torch.cat([torch.randn(2000, generator=g).half(), _special(torch.float16)]),
        "c.bf16": torch.cat([torch.randn(1000, generator=g).bfloat16(), _special(torch.bfloat16)]),
        "d.fp8_e4m3": torch.cat([(torch.randn(300, generator=g) * 4).to(torch.float8_e4m3fn),
                                 _special(torch.float8_e4m3fn)]),
        "e.fp8_e5m2": torch.cat([(torch.randn(300, generator=g) * 4).to(torch.float8_e5m2),
                                 _special(torch.float8_e5m2)]),
        "f.scalar": torch.tensor(0.25, dtype=torch.float16),
        "g.steps": torch.tensor(7),
        "h.mask": torch.tensor([True, False]),
    }
    if with_float64:
        sd["i.fp64"] = torch.cat([torch.randn(500, generator=g, dtype=torch.float64), _special(torch.float64)])
    save_file(sd, tmp_path / "m.safetensors")
    with open_checkpoint(tmp_path / "m.safetensors") as reader:
        summary = write_model_parameters(reader, tmp_path / "out.zarr", chunk_size=1024, block_rows=2)
    stored = read_model_parameters(tmp_path / "out.zarr")
    assert stored.index.chunk_dtype == ("float64" if with_float64 else "float32")
    assert not summary.all_finite  # inf / nan are stored as they are, and the check sees them
    assert set(summary.skipped_names) == {"g.steps", "h.mask"}
    back = unflatten(stored.chunks, stored.index)
    assert set(back) == {k for k, v in sd.items() if v.dtype.is_floating_point}
    for name, tensor in back.items():
        assert tensor.dtype == sd[name].dtype and tensor.shape == sd[name].shape, name
        nan = torch.isnan(sd[name].float())
        assert torch.equal(torch.isnan(tensor.float()), nan), name
        assert torch.equal(_bits(tensor)[~nan], _bits(sd[name])[~nan]), name  # -0.0, subnormals, inf kept


@pytest.mark.parametrize(
    ("what", "state"),
    [
        ("only_integer_buffers", {"bn.num_batches_tracked": torch.tensor(3), "pos_ids": torch.arange(7)}),
        ("only_bool_masks", {"mask": torch.ones(4, dtype=torch.bool)}),
        ("only_empty_float_tensors", {"w": torch.zeros(0, 5)}),
        ("no_tensors_at_all", {}),
    ],
)
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_nothing_to_embed_is_refused_before_writing(tmp_path, what, state, suffix):
    path = tmp_path / f"{what}{suffix}"
    if suffix == ".safetensors":
        save_file(state, path)
    else:
        torch.save(state, path)
    out = tmp_path / "out.zarr"
    pattern = "holds no tensors" if (suffix == ".pt" and not state) else "no floating-point tensors"
    with pytest.raises(CheckpointError, match=pattern) as caught:
        with open_checkpoint(path) as reader:
            write_model_parameters(reader, out)
    assert str(path) in str(caught.value)
    assert not out.exists()  # refused before any file of the artifact was created


# --- containers -----------------------------------------------------------------------------------------


def _flat_names_and_hash(path: Path, out: Path) -> tuple[list[str], str]:
    with open_checkpoint(path) as reader:
        summary = write_model_parameters(reader, out, chunk_size=256)
    return [e.name for e in read_model_parameters(out).index.entries], summary.content_hash


@pytest.mark.parametrize(
    "wrap",
    [
        "unusual_key_with_optimizer",
        "nested_twice",
        "lightning_like",
        "compiled_prefix",
    ],
)
def test_state_dict_in_unusual_containers_gives_the_plain_content(tmp_path, wrap):
    sd = _sd()
    momentum = {0: {"momentum_buffer": torch.ones(8, 3, 3, 3)}, 1: {"momentum_buffer": torch.ones(4, 8)}}
    containers = {
        "unusual_key_with_optimizer": {"teacher": sd, "optimizer": {"state": momentum}, "epoch": 3},
        "nested_twice": {"checkpoint": {"model": sd, "step": 10}, "meta": {"name": "x"}},
        "lightning_like": {"epoch": 1, "optimizer_states": [{"state": momentum}], "lr_schedulers": [{"last_epoch": 1}],
                           "weights_of_my_net": sd},
        "compiled_prefix": {f"_orig_mod.{k}": v for k, v in sd.items()},
    }
    torch.save(containers[wrap], tmp_path / "wrapped.pt")
    save_file(sd, tmp_path / "plain.safetensors")
    names, digest = _flat_names_and_hash(tmp_path / "wrapped.pt", tmp_path / "a.zarr")
    plain_names, plain_digest = _flat_names_and_hash(tmp_path / "plain.safetensors", tmp_path / "b.zarr")
    assert names == plain_names == ["conv.bias", "conv.weight", "fc.weight"]  # no optimizer buffer
    assert digest == plain_digest


def test_several_weight_subtrees_are_all_kept_with_prefixes(tmp_path):
    sd = _sd()
    torch.save({"encoder": sd, "decoder": _sd(1), "optimizer": {"m": torch.ones(3)}}, tmp_path / "two.pt")
    names = set(_read_all(tmp_path / "two.pt"))
    assert names == {f"{p}.{k}" for p in ("encoder", "decoder") for k in sd}


# --- the same content twice, through the asset ------------------------------------------------------


def _asset_setup(tmp_path: Path):
    zoo, artifacts = tmp_path / "zoo", tmp_path / "artifacts"
    zoo.mkdir()
    return zoo, artifacts, zoo_resources(zoo, artifacts), DagsterInstance.ephemeral()


def test_identical_checkpoints_are_both_kept_with_equal_content_hashes(tmp_path):
    """Decision: two models with the same weights stay two models (two partitions, two artifacts).

    Their artifacts have the same cache key (same bytes, same config) and the same data version,
    each under its own partition folder; the same weights saved as .pt get another cache key (other
    bytes) but the same data version (content-derived), so downstream sees equal content.
    """
    zoo, artifacts, resources, instance = _asset_setup(tmp_path)
    save_file(_sd(), zoo / "alpha.safetensors")
    shutil.copy(zoo / "alpha.safetensors", zoo / "alpha_copy.safetensors")
    torch.save(_sd(), zoo / "alpha_as_pickle.pt")
    results = {}
    for name in ("alpha", "alpha_copy", "alpha_as_pickle"):
        result = materialize_partition(model_parameters, name, resources, instance)
        assert result.success, failure_text(result)
        results[name] = metadata_of(result)
    a, b, c = results["alpha"], results["alpha_copy"], results["alpha_as_pickle"]
    assert a["content_hash"] == b["content_hash"] == c["content_hash"]
    assert a["cache_key"] == b["cache_key"] != c["cache_key"]
    assert a["path"] != b["path"] and not a["cache_hit"] and not b["cache_hit"]
    dirs = {name: Path(results[name]["path"]) for name in results}
    assert all(read_manifest(d) is not None for d in dirs.values())
    chunks = [read_model_parameters(d / PARAMS_DIR).chunks[:] for d in dirs.values()]
    assert all(np.array_equal(chunks[0], other) for other in chunks[1:])


def test_bad_checkpoints_fail_the_asset_naming_the_file_and_leave_others_intact(tmp_path):
    zoo, artifacts, resources, instance = _asset_setup(tmp_path)
    save_file(_sd(), zoo / "good.safetensors")
    save_file(_sd(1), zoo / "broken.safetensors")
    (zoo / "broken.safetensors").write_bytes((zoo / "broken.safetensors").read_bytes()[:-40])
    marker = tmp_path / "PWNED"
    torch.save({"w": torch.zeros(2), "x": _Payload(marker)}, zoo / "evil.pt")
    torch.save({"steps": torch.tensor(3)}, zoo / "ints_only.pt")

    good = materialize_partition(model_parameters, "good", resources, instance)
    assert good.success
    good_dir = Path(metadata_of(good)["path"])
    before = {p: p.read_bytes() for p in good_dir.rglob("*") if p.is_file()}
    good_ref = read_json(resources["store"].ref_path("model_parameters", "good"))

    for name, problem in [("broken", "not a readable safetensors file"), ("evil", "never unpickled"),
                          ("ints_only", "no floating-point tensors")]:
        result = materialize_partition(model_parameters, partition_key(name), resources, instance)
        assert not result.success
        text = failure_text(result)
        assert str(zoo / name) in text and problem in text, text
        assert not resources["store"].ref_path("model_parameters", name).exists()
        assert not (artifacts / "model_parameters" / name).exists() or not any(
            read_manifest(d) for d in (artifacts / "model_parameters" / name).iterdir()
        )
    assert not marker.exists()
    assert temporaries(artifacts) == []  # failed builds leave nothing behind
    assert {p: p.read_bytes() for p in good_dir.rglob("*") if p.is_file()} == before
    assert read_json(resources["store"].ref_path("model_parameters", "good")) == good_ref
    again = materialize_partition(model_parameters, "good", resources, instance)
    assert again.success and metadata_of(again)["cache_hit"]


def test_a_checkpoint_removed_from_the_zoo_is_a_clear_failure(tmp_path):
    zoo, _, resources, instance = _asset_setup(tmp_path)
    save_file(_sd(), zoo / "gone.safetensors")
    instance.add_dynamic_partitions("models", ["gone"])
    os.remove(zoo / "gone.safetensors")
    result = materialize_partition(model_parameters, "gone", resources, instance)
    assert not result.success and "'gone' is not in the zoo" in failure_text(result)
