"""The named jobs hold the whole graph, and the user's files are source assets at its root.

Cheap checks of the code location; tests/test_plan.py checks, on a materialized world, that every run the
runner launches is under one of these jobs and that the sources' observed versions follow the files.
"""

import warnings

from dagster import AssetKey

from assets import ALL_ASSETS, ALL_SOURCES
from pipelines.definitions import build_definitions, defs
from pipelines.jobs import ALL_JOBS, JOB_OF_ASSET, OBSERVES


def _selected(job_name: str) -> set[str]:
    job = defs.resolve_job_def(job_name)
    return {key.path[-1] for key in job.asset_layer.selected_asset_keys}


def test_every_asset_runs_under_a_named_job_that_selects_it():
    names = {a.key.path[-1] for a in ALL_ASSETS}
    assert set(JOB_OF_ASSET) == names
    assert set(JOB_OF_ASSET.values()) <= {j.name for j in ALL_JOBS}
    for asset, job in JOB_OF_ASSET.items():
        assert asset in _selected(job), (asset, job)
    for asset, source in OBSERVES.items():
        assert source in _selected(JOB_OF_ASSET[asset]), (asset, source)


def test_the_user_files_are_observable_sources_upstream_of_what_reads_them():
    sources = {a.key.path[-1]: a for a in ALL_SOURCES}
    assert set(sources) == {"model_checkpoints", "image_folders", "result_files"}
    assert all(a.is_observable and not a.is_materializable for a in sources.values())
    graph = defs.resolve_asset_graph()
    for reader, source in {**OBSERVES, "model_costs": "model_checkpoints", "transfer_performance": "image_folders",
                           "transferability_scores": "model_checkpoints"}.items():
        assert AssetKey(source) in graph.get(AssetKey(reader)).parent_keys, (reader, source)
    # the sources share the partitions of the assets that read them partition by partition
    by_name = {a.key.path[-1]: a for a in ALL_ASSETS}
    for reader, source in OBSERVES.items():
        assert sources[source].partitions_def == by_name[reader].partitions_def


def test_the_code_location_loads_its_jobs_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        location = build_definitions()  # a new one: resolution warns once per code location
        for job in ALL_JOBS:
            location.resolve_job_def(job.name)
