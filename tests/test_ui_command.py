"""`make ui`: the Dagster webserver + daemon, bound to 127.0.0.1, sensors and schedule RUNNING by default."""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.pipeline_helpers import world_env

pytestmark = pytest.mark.slow  # dagster dev: webserver + daemon subprocesses

REPO = Path(__file__).resolve().parents[1]
LOCATION = "pipelines.definitions:defs"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["data"]


def wait_for_ui(port: int, process: subprocess.Popen, timeout: float = 120) -> None:
    """Until the UI on ``port`` answers ``/server_info``; fails if ``process`` exits first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                return
        except OSError:
            assert time.monotonic() < deadline, "dagster dev did not answer on /server_info"
            assert process.poll() is None, "the UI command exited"
            time.sleep(1)


def _listening_addresses(port: int) -> set[str]:
    out = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout
    return {line.split()[3].rsplit(":", 1)[0] for line in out.splitlines() if line.split()[3].endswith(f":{port}")}


def test_make_ui_serves_on_localhost_with_automation_running(tmp_path, standin_world):
    world = standin_world
    home = tmp_path / "dagster_home"
    port = _free_port()
    env = os.environ | world_env(world, tmp_path / "artifacts") | {"DAGSTER_HOME": str(home)}
    env.pop("MODELREC_AUTOMATION", None)  # the documented default: on
    ui = subprocess.Popen(
        ["make", "-s", "ui", f"UI_PORT={port}"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        wait_for_ui(port, ui)
        assert _listening_addresses(port) == {"127.0.0.1"}
        assert (home / "dagster.yaml").read_text() == (REPO / "deploy" / "dagster.yaml").read_text()
        selector = f'repositorySelector: {{repositoryLocationName: "{LOCATION}", repositoryName: "__repository__"}}'
        data = _graphql(
            port,
            f"{{ sensorsOrError({selector}) {{ ... on Sensors {{ results {{ name sensorState {{ status }} }} }} }}"
            f"  schedulesOrError({selector}) {{ ... on Schedules {{ results {{ name scheduleState {{ status }} }} }} }} }}",
        )
        sensors = {s["name"]: s["sensorState"]["status"] for s in data["sensorsOrError"]["results"]}
        schedules = {s["name"]: s["scheduleState"]["status"] for s in data["schedulesOrError"]["results"]}
        assert sensors == {
            "model_zoo_sensor": "RUNNING",
            "dataset_catalog_sensor": "RUNNING",
            "results_sensor": "RUNNING",
            "recommendations_automation": "RUNNING",
        }
        assert schedules == {"reembed_stale_models": "RUNNING"}
        # the daemon really ticks: the dataset sensor registers the world's datasets and launches runs
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            runs = _graphql(port, "{ runsOrError { ... on Runs { results { jobName tags { key value } } } } }")
            jobs = [r["jobName"] for r in runs["runsOrError"]["results"]]
            if jobs.count("dataset_tokens_job") == len(world.dataset_names):
                break
            time.sleep(2)
        assert jobs.count("dataset_tokens_job") == len(world.dataset_names)
    finally:
        os.killpg(ui.pid, signal.SIGINT)
        try:
            ui.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)
            ui.wait(timeout=10)
