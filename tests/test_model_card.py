"""One model-card schema for every sidecar: lenient to read, exact to write, one meaning of `architecture`."""

import json

import pytest

from ml_core.artifacts import hash_parts
from ml_core.weights import ModelCard, ModelCardError, library_architecture
from resources.model_zoo import ZooError, discover_zoo


def test_a_users_card_reads_with_defaults_and_keeps_unknown_keys(tmp_path):
    card = ModelCard.from_metadata({"architecture": "smallcnn", "num_classes": 4, "pixel_mean": 0.5,
                                    "pixel_std": 0.25, "licence": "cc-by"}, tmp_path / "m.json")
    assert card.pixel_mean == [0.5] * 3 and card.pixel_std == [0.25] * 3 and card.input_size == 32
    assert card.model_extra == {"licence": "cc-by"} and card.format == "safetensors"
    assert card.library_architecture is None  # a zoo architecture: rebuilt by ml_core.weights


def test_the_transfer_fingerprint_reads_only_what_the_protocol_reads(tmp_path):
    base = {"architecture": "smallcnn", "arch_kwargs": {"width": 8}, "num_classes": 4}
    card = ModelCard.from_metadata(base, tmp_path / "m.json")
    expected = hash_parts("transfer_card", {"architecture": "smallcnn", "arch_kwargs": {"width": 8}, "num_classes": 4,
                                            "input_size": 32, "pixel_mean": [0.5] * 3, "pixel_std": [0.25] * 3})
    assert card.transfer_fingerprint() == expected
    described = ModelCard.from_metadata(base | {"origin": "somewhere", "source_accuracy": 0.9}, tmp_path / "m.json")
    assert described.transfer_fingerprint() == expected  # what the card says of itself is not the protocol's input
    resized = ModelCard.from_metadata(base | {"input_size": 64}, tmp_path / "m.json")
    assert resized.transfer_fingerprint() != expected


@pytest.mark.parametrize(
    ("metadata", "library"),
    [({"architecture": "timm:resnet18"}, "timm:resnet18"), ({"architecture": "smallcnn"}, None),
     ({"timm_or_torchvision_architecture": "torchvision:resnet18"}, "torchvision:resnet18"),  # the older key
     ({"architecture": "keras:x"}, "keras:x"),  # kept, so that loading says the library is unknown
     ({}, None), ({"architecture": 3}, None)],
)
def test_one_architecture_field_names_a_library_network_by_its_prefix(metadata, library):
    assert library_architecture(metadata) == library


def test_a_written_card_shows_no_unused_nesting_key(tmp_path):
    plain = ModelCard(name="m", architecture="smallcnn", num_classes=2)
    assert "state_dict_key" not in plain.model_dump(mode="json")
    nested = plain.model_copy(update={"format": "pt", "state_dict_key": "state_dict"})
    assert nested.model_dump(mode="json")["state_dict_key"] == "state_dict"


def test_a_malformed_card_is_an_error_naming_the_file_and_spoils_only_its_model(tmp_path):
    (tmp_path / "good.safetensors").write_bytes(b"")
    (tmp_path / "good.json").write_text(json.dumps({"architecture": "smallcnn", "num_classes": 2}))
    (tmp_path / "bad.safetensors").write_bytes(b"")
    (tmp_path / "bad.json").write_text(json.dumps({"num_classes": "many"}))
    entries = {e.name: e for e in discover_zoo(tmp_path)}  # discovery never fails on one bad card
    assert entries["good"].card().num_classes == 2
    with pytest.raises(ZooError, match=r"bad\.json.*num_classes"):
        entries["bad"].card()
    with pytest.raises(ModelCardError, match=r"bad\.json"):
        ModelCard.read(tmp_path / "bad.json")
