"""``make cluster`` / ``make cluster-stop`` (``python -m pipelines.cluster``): every process up, bound to
127.0.0.1, the UI answering; after stop, every process group is gone. Needs PostgreSQL and RabbitMQ
(a missing service fails the test)."""

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

from pipelines import cluster
from resources import settings

pytestmark = pytest.mark.slow
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _listening_ports(pid: int) -> set[tuple[str, int]]:
    """(address, port) of the TCP sockets process ``pid`` listens on (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
            address, port = fields[1].split(":")
            found.add((".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0)), int(port, 16)))
    return found


def test_cluster_starts_answers_and_stops_by_pid(tmp_path):
    run_dir = tmp_path / "cluster"
    port = cluster.free_port()
    db = f"cluster_core_cmd_{uuid.uuid4().hex[:10]}"
    env = os.environ | {"DAGSTER_POSTGRES_DB": db, "TQDM_DISABLE": "1"}
    env.pop("AWS_ENDPOINT_URL", None)  # no endpoint given: the command starts its own S3 server
    command = [sys.executable, "-m", "pipelines.cluster"]
    try:
        started = subprocess.run([*command, "start", "--run-dir", str(run_dir), "--workers", "2", "--port", str(port)],
                                 env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=400)
        assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
        info = json.loads((run_dir / "cluster.json").read_text())
        assert set(info["pids"]) == {"worker1", "worker2", "daemon", "webserver"}
        pids = {p.stem: int(p.read_text()) for p in (run_dir / "pids").glob("*.pid")}
        assert set(pids) == {"s3", "worker1", "worker2", "daemon", "webserver"}
        for name, pid in pids.items():
            assert os.getpgid(pid) == pid, name  # each the leader of its own process group
            assert cluster.alive(pid), (name, (run_dir / "logs" / f"{name}.log").read_text()[-2000:])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=10) as response:
            assert response.status == 200 and "dagster_webserver_version" in json.loads(response.read())
        assert _listening_ports(pids["webserver"]) >= {("127.0.0.1", port)}
        assert all(address == "127.0.0.1" for address, _ in _listening_ports(pids["webserver"]) | _listening_ports(pids["s3"]))
        assert info["artifact_root"].startswith("s3://") and info["s3_endpoint"].startswith("http://127.0.0.1:")
        assert "postgres" in (Path(info["dagster_home"]) / "dagster.yaml").read_text()
    finally:
        stopped = subprocess.run([*command, "stop", "--run-dir", str(run_dir)], env=env, cwd=PROJECT_ROOT,
                                 capture_output=True, text=True, timeout=120)
        cluster.drop_database(settings.postgres_env() | {"DAGSTER_POSTGRES_DB": db})
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped 5 process group(s)" in stopped.stdout
    assert not any(cluster.group_alive(pid) for pid in pids.values())
    assert not list((run_dir / "pids").glob("*.pid"))
