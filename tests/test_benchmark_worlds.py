"""`--worlds` folders of the ranking benchmarks: the full world or one built at another scale."""

import argparse
import json

import pytest

from benchmarks.ranking_quality import world_in, world_stores


def _world(folder, name, seed):
    (folder / name).mkdir(parents=True)
    (folder / name / "world.json").write_text(json.dumps({"seed": seed}))


def test_world_stores_finds_the_full_world_and_a_wide_one(tmp_path, monkeypatch):
    monkeypatch.setattr("benchmarks.ranking_quality.world_seed", lambda root: json.loads((root / "world.json").read_text())["seed"])
    _world(tmp_path / "a", "demo_world", 0)
    _world(tmp_path / "b", "demo_world_wide", 2)
    assert world_in(tmp_path / "a") == (tmp_path / "a" / "demo_world", "full")
    assert world_in(tmp_path / "b") == (tmp_path / "b" / "demo_world_wide", "wide")
    args = argparse.Namespace(worlds=[str(tmp_path / "a"), str(tmp_path / "b")], store=None, datasets=None, zoo=None)
    (label_a, a), (label_b, b) = world_stores(args)
    assert (label_a, label_b) == ("seed0", "wide:seed2")  # a wide world's folds never pair with a full one's
    assert b.store == str(tmp_path / "b" / "artifacts") and b.datasets == str(tmp_path / "b" / "demo_world_wide" / "datasets")


def test_a_folder_without_one_world_is_refused_by_name(tmp_path):
    _world(tmp_path, "demo_world_wide", 0)
    _world(tmp_path, "demo_world_reduced", 0)
    with pytest.raises(SystemExit, match="demo_world_reduced"):
        world_in(tmp_path)
    with pytest.raises(SystemExit, match="found none"):
        world_in(tmp_path / "demo_world_wide" / "nothing")
