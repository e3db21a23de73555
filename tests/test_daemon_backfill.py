"""A real backfill through the Dagster daemon: `dagster job backfill` over three datasets."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, DagsterRunStatus
from dagster._core.instance.ref import InstanceRef

from tests.pipeline_helpers import world_env

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # dagster-daemon and CLI subprocesses
BIN = Path(sys.executable).parent


def test_backfill_of_three_datasets_materializes_their_tokens(tmp_path, standin_world):
    world = standin_world
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").touch()
    env = os.environ | world_env(world, tmp_path / "artifacts") | {
        "DAGSTER_HOME": str(home),
        "MODELREC_AUTOMATION": "off",  # only the backfill launches runs here
    }
    datasets = sorted(world.dataset_names)[:3]
    registered = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "register"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert registered.returncode == 0, registered.stderr[-2000:]
    daemon = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: stopped cleanly below
    )
    try:
        backfill = subprocess.run(
            [str(BIN / "dagster"), "job", "backfill", "-w", "workspace.yaml", "-j", "dataset_tokens_job",
             "--partitions", ",".join(datasets), "--noprompt"],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=180,
        )
        assert backfill.returncode == 0, backfill.stderr[-2000:]
        instance = DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            runs = instance.get_runs()
            if len(runs) >= 3 and all(r.is_finished for r in runs):
                break
            time.sleep(2)
        runs = instance.get_runs()
        assert sorted(r.tags.get("dagster/partition") for r in runs) == datasets
        assert {r.status for r in runs} == {DagsterRunStatus.SUCCESS}
        assert len({r.tags.get("dagster/backfill") for r in runs}) == 1
        for dataset in datasets:
            records = instance.fetch_materializations(
                AssetRecordsFilter(asset_key=AssetKey("dataset_tokens"), asset_partitions=[dataset]), limit=1
            ).records
            assert records and records[0].asset_materialization.metadata["n_valid_images"].value > 0
        assert (tmp_path / "artifacts" / "_refs" / "dataset_tokens").is_dir()
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
