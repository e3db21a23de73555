"""The folder sensors' cursor: a digest, the fingerprints in the instance's key-value store."""

from __future__ import annotations

import json
import logging

import pytest
from dagster import instance_for_test

from pipelines.folder_watch import diff_folder
from pipelines.sensor_cursor import cursor_for, previous_fingerprints, record_fingerprints

SENSOR = "model_zoo_sensor"


@pytest.fixture
def instance():
    with instance_for_test() as instance:
        yield instance


def _folder(n: int) -> dict[str, list]:
    return {f"model_{i:05d}": [1000 + i, 1_700_000_000_000_000_000 + i, ""] for i in range(n)}


def test_the_cursor_stays_small_and_the_fingerprints_come_back(instance):
    current = _folder(10_000)
    cursor = record_fingerprints(instance, SENSOR, None, current)
    assert len(cursor) < 64 < len(json.dumps(current)) // 1000  # ~40 bytes against ~0.5 MB
    changed = dict(current) | {"model_00007": [1, 2, ""]}
    assert previous_fingerprints(instance, SENSOR, cursor, changed) == current  # read from the store
    changes = diff_folder(changed, previous_fingerprints(instance, SENSOR, cursor, changed), set(current))
    assert changes.changed == ["model_00007"] and not changes.new and not changes.removed


def test_an_unchanged_folder_neither_reads_nor_writes(instance, monkeypatch):
    current = _folder(50)
    cursor = record_fingerprints(instance, SENSOR, None, current)

    def forbidden(*_args, **_kwargs):
        raise AssertionError("the key-value store was used on an unchanged folder")

    monkeypatch.setattr(type(instance.run_storage), "get_cursor_values", forbidden)
    monkeypatch.setattr(type(instance.run_storage), "set_cursor_values", forbidden)
    assert previous_fingerprints(instance, SENSOR, cursor, current) == current
    assert record_fingerprints(instance, SENSOR, cursor, current) == cursor


def test_a_change_frees_the_previous_copy(instance, caplog):
    first = _folder(5)
    old = record_fingerprints(instance, SENSOR, None, first)
    new = record_fingerprints(instance, SENSOR, old, _folder(6))
    assert new != old and new == cursor_for(_folder(6))
    with caplog.at_level(logging.WARNING):
        assert previous_fingerprints(instance, SENSOR, old, _folder(6)) is None  # emptied: a first tick
    assert "are gone" in caplog.text


def test_a_cursor_of_the_former_kind_is_still_read(instance):
    current = _folder(3)
    former = json.dumps(current, sort_keys=True, separators=(",", ":"))
    assert previous_fingerprints(instance, SENSOR, former, current | {"x": [1, 1, ""]}) == current
    assert previous_fingerprints(instance, SENSOR, None, current) is None
