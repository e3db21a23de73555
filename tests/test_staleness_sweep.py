"""The re-embedding schedule's budgeted sweep: a tick checks what its time allows, the next resumes."""

from __future__ import annotations

import pytest
from dagster import SkipReason, build_schedule_context, instance_for_test

from benchmarks.rehearsal import STALE_EVERY, seed_standin_store
from pipelines import schedules
from pipelines.staleness import stale_model_embeddings, sweep_stale_models
from resources.artifact_store import ArtifactStore


@pytest.fixture
def seeded(tmp_path):
    store = ArtifactStore(root=str(tmp_path / "artifacts"))
    keys = [f"m{i:04d}" for i in range(600)]
    stale = seed_standin_store(store, keys)
    assert stale == 600 // STALE_EVERY
    return store, keys


def test_a_sweep_out_of_time_resumes_where_it_stopped(seeded):
    store, keys = seeded
    whole = stale_model_embeddings(store, keys)
    found, start, sweeps = [], None, 0
    while True:
        sweep = sweep_stale_models(store, keys, start, budget_s=0.0, batch=64)  # one batch per sweep
        found += sweep.stale
        sweeps += 1
        assert sweep.checked == min(64, len(keys) - 64 * (sweeps - 1))
        if sweep.resume_at is None:
            break
        start = sweep.resume_at
    assert sweeps == -(-len(keys) // 64)
    assert found == whole and len(whole) == 600 // STALE_EVERY
    assert sweep_stale_models(store, keys, None, budget_s=60.0).stale == whole  # in time: one sweep


def test_the_schedule_carries_its_position_from_tick_to_tick(seeded, monkeypatch):
    store, keys = seeded
    monkeypatch.setattr(schedules, "SWEEP_BUDGET_SECONDS", 0.0)  # every tick out of time after one batch
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("models", keys)
        requested = []
        for _ in range(3):  # 600 keys in batches of 256: three ticks
            result = schedules.reembed_stale_models(build_schedule_context(instance=instance, resources={"store": store}))
            requested += [r.partition_key for r in result]
        assert sorted(requested) == [s.key for s in stale_model_embeddings(store, keys)]
        assert len(requested) == len(set(requested))  # no model checked twice within the sweep
        again = schedules.reembed_stale_models(build_schedule_context(instance=instance, resources={"store": store}))
        assert not isinstance(again, SkipReason) and again[0].partition_key == "m0000"  # a new sweep from the start
