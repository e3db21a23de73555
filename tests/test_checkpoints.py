"""Checkpoint loading: every format, nested state dicts, architectures, and refusal of code-running pickles."""

import pickle

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from ml_core.weights import CheckpointError, open_checkpoint


def _sd():
    g = torch.Generator().manual_seed(1)
    return {"a.weight": torch.randn(4, 3, generator=g), "a.bias": torch.randn(4, generator=g), "bn.num_batches_tracked": torch.tensor(2)}


def _assert_same(reader, sd):
    with reader:
        names = [i.name for i in reader.tensor_infos()]
        assert sorted(names) == sorted(sd)
        for name in names:
            assert torch.equal(reader.get(name), sd[name])


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin"])
def test_plain_state_dict_in_pickle_formats(tmp_path, suffix):
    sd = _sd()
    torch.save(sd, tmp_path / f"m{suffix}")
    _assert_same(open_checkpoint(tmp_path / f"m{suffix}"), sd)


def test_safetensors(tmp_path):
    sd = _sd()
    save_file(sd, tmp_path / "m.safetensors")
    _assert_same(open_checkpoint(tmp_path / "m.safetensors"), sd)


@pytest.mark.parametrize("key", ["state_dict", "model", "model_ema"])
def test_state_dict_under_usual_key(tmp_path, key):
    sd = _sd()
    torch.save({key: sd, "epoch": 3, "optimizer_name": "sgd"}, tmp_path / "m.pt")
    _assert_same(open_checkpoint(tmp_path / "m.pt"), sd)


def test_dataparallel_prefix_is_stripped(tmp_path):
    sd = _sd()
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "m.pt")
    _assert_same(open_checkpoint(tmp_path / "m.pt"), sd)


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED_BY_CHECKPOINT",))


def test_pickle_that_would_run_code_is_refused_without_running_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"w": _Evil()}, f)
    torch.save({"weights": torch.zeros(2), "obj": _Evil()}, tmp_path / "evil_zip.pt")
    for name in ("evil.pt", "evil_zip.pt"):
        with pytest.raises(CheckpointError, match="never unpickled"):
            open_checkpoint(tmp_path / name)
    assert not (tmp_path / "PWNED_BY_CHECKPOINT").exists()


def test_unsupported_missing_and_corrupt_files(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="unsupported"):
        open_checkpoint(tmp_path / "m.onnx")
    with pytest.raises(CheckpointError, match="not found"):
        open_checkpoint(tmp_path / "nope.safetensors")
    save_file(_sd(), tmp_path / "t.safetensors")
    data = (tmp_path / "t.safetensors").read_bytes()
    (tmp_path / "t.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"t\.safetensors"):
        r = open_checkpoint(tmp_path / "t.safetensors")
        [r.get(i.name) for i in r.tensor_infos()]


def test_torchvision_architecture_with_local_weights(tmp_path):
    model = torchvision.models.get_model("resnet18", weights=None, num_classes=1000)
    torch.save(model.state_dict(), tmp_path / "r18.pth")
    reader = open_checkpoint(tmp_path / "r18.pth", architecture="torchvision:resnet18")
    _assert_same(reader, model.state_dict())


def test_architecture_mismatch_is_a_clear_error(tmp_path):
    torch.save(_sd(), tmp_path / "small.pt")
    with pytest.raises(CheckpointError, match="does not fit architecture"):
        open_checkpoint(tmp_path / "small.pt", architecture="torchvision:resnet18")
    with pytest.raises(CheckpointError, match="unknown library"):
        open_checkpoint(tmp_path / "small.pt", architecture="keras:resnet18")
