"""A Dagster cluster on this machine's loopback: ``make cluster`` / ``make cluster-stop``.

What runs, each process in its own process group, its PID written to ``<run dir>/pids/<name>.pid``
and its output to ``<run dir>/logs/<name>.log``:

- an S3 API (moto's server) for the artifacts, unless ``AWS_ENDPOINT_URL`` names one already;
- ``dagster-webserver`` and ``dagster-daemon`` on the PostgreSQL instance of ``deploy/cluster/dagster.yaml``
  (DAGSTER_HOME is ``<run dir>/dagster_home``; the database is created if absent);
- N Celery workers (``dagster-celery worker start``, one step at a time each) on the broker of
  ``deploy/cluster/celery.yaml``.

Every process gets the same environment: ``MODELREC_EXECUTOR=celery``, the artifact root on S3, the
``AWS_*`` and ``DAGSTER_POSTGRES_*`` variables. ``stop`` ends each process group by the PID written.
The test and benchmark modules use the same functions.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import click

from resources import settings

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CLUSTER_INSTANCE_FILE = PROJECT_ROOT / "deploy" / "cluster" / "dagster.yaml"
CELERY_CONFIG_FILE = PROJECT_ROOT / "deploy" / "cluster" / "celery.yaml"
HOST = "127.0.0.1"
DEFAULT_BUCKET = "modelrec"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _bin(name: str) -> str:
    """A console script of this interpreter's environment (the venv's ``dagster``, ``dagster-celery``)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


@dataclass(frozen=True)
class Service:
    """A started process (the leader of its own process group)."""

    name: str
    pid: int
    log: Path


def start_service(name: str, argv: list[str], env: dict[str, str], run_dir: Path) -> Service:
    """Start ``argv`` in a new session (its own process group) with output to ``logs/<name>.log``;
    write its PID to ``pids/<name>.pid``."""
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    (run_dir / "pids").mkdir(parents=True, exist_ok=True)
    log = run_dir / "logs" / f"{name}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT,
                                   start_new_session=True, stdin=subprocess.DEVNULL)
    (run_dir / "pids" / f"{name}.pid").write_text(str(process.pid))
    logger.info("started %s (pid %d): %s", name, process.pid, " ".join(argv))
    return Service(name, process.pid, log)


def alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # reap it if it is our child and has ended
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def group_alive(pgid: int) -> bool:
    """True while a live process (not a zombie waiting to be reaped) of process group ``pgid`` exists."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: ask the kernel (zombies count as alive there)
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, pgrp
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def stop_group(pid: int, timeout: float = 20.0) -> None:
    """SIGTERM the process group led by ``pid``, then SIGKILL whatever is left after ``timeout`` s."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            alive(pid)  # reap the leader if it is our child
            if not group_alive(pid):
                return
            time.sleep(0.2)


def wait_until(check, timeout: float, what: str, service: Service | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if service is not None and not alive(service.pid):
            raise RuntimeError(f"{service.name} ended while waiting for {what}; see {service.log}:\n"
                               + service.log.read_text()[-3000:])
        time.sleep(0.25)
    tail = service.log.read_text()[-3000:] if service is not None else ""
    raise TimeoutError(f"{what}: not ready after {timeout:.0f} s\n{tail}")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


# --- the services -----------------------------------------------------------------------------


def start_s3(run_dir: Path, env: dict[str, str], bucket: str = DEFAULT_BUCKET) -> tuple[Service, dict[str, str]]:
    """moto's S3 server on a free loopback port, with ``bucket`` created; returns it and the ``AWS_*``
    variables that point s3fs / boto3 at it (stand-in credentials: moto accepts any)."""
    port = free_port()
    service = start_service("s3", [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)], env, run_dir)
    aws = {"AWS_ENDPOINT_URL": f"http://{HOST}:{port}", "AWS_ACCESS_KEY_ID": env.get("AWS_ACCESS_KEY_ID", "modelrec"),
           "AWS_SECRET_ACCESS_KEY": env.get("AWS_SECRET_ACCESS_KEY", "modelrec"),
           "AWS_DEFAULT_REGION": env.get("AWS_DEFAULT_REGION", "us-east-1")}
    wait_until(lambda: http_ok(f"{aws['AWS_ENDPOINT_URL']}/moto-api/"), 60, "the S3 server", service)
    create_bucket(bucket, aws)
    return service, aws


def create_bucket(bucket: str, aws: dict[str, str]) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=aws["AWS_ENDPOINT_URL"], region_name=aws["AWS_DEFAULT_REGION"],
                          aws_access_key_id=aws["AWS_ACCESS_KEY_ID"], aws_secret_access_key=aws["AWS_SECRET_ACCESS_KEY"])
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou, client.exceptions.BucketAlreadyExists):
        client.create_bucket(Bucket=bucket)


def _pg_connect(pg: dict[str, str], db: str):
    import psycopg2

    return psycopg2.connect(host=pg["DAGSTER_POSTGRES_HOST"], port=int(pg["DAGSTER_POSTGRES_PORT"]),
                            user=pg["DAGSTER_POSTGRES_USER"], password=pg["DAGSTER_POSTGRES_PASSWORD"] or None,
                            dbname=db, connect_timeout=10)


def create_database(pg: dict[str, str]) -> bool:
    """Create ``DAGSTER_POSTGRES_DB`` if absent; True if it was created."""
    connection = _pg_connect(pg, "postgres")
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("select 1 from pg_database where datname = %s", (pg["DAGSTER_POSTGRES_DB"],))
            if cursor.fetchone():
                return False
            cursor.execute(f'create database "{pg["DAGSTER_POSTGRES_DB"]}"')
            return True
    finally:
        connection.close()


def drop_database(pg: dict[str, str]) -> None:
    connection = _pg_connect(pg, "postgres")
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'drop database if exists "{pg["DAGSTER_POSTGRES_DB"]}" with (force)')
    finally:
        connection.close()


def prepare_home(home: Path) -> Path:
    """``home`` with the cluster instance's ``dagster.yaml``."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(CLUSTER_INSTANCE_FILE, home / "dagster.yaml")
    return home


def start_worker(name: str, env: dict[str, str], run_dir: Path, *, wait: bool = True) -> Service:
    """A Celery worker running one step at a time (``--concurrency=1``), named ``<name>@<host>``."""
    argv = [_bin("dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-y", str(CELERY_CONFIG_FILE),
            "-n", name, "--", "--concurrency=1", "--without-gossip", "--without-mingle"]
    service = start_service(name, argv, env, run_dir)
    if wait:
        wait_until(lambda: " ready." in service.log.read_text(errors="replace"), 90, f"worker {name}", service)
    return service


def start_webserver(env: dict[str, str], run_dir: Path, port: int) -> Service:
    argv = [_bin("dagster-webserver"), "-w", str(PROJECT_ROOT / "workspace.yaml"), "-h", HOST, "-p", str(port)]
    service = start_service("webserver", argv, env, run_dir)
    wait_until(lambda: http_ok(f"http://{HOST}:{port}/server_info"), 120, "the webserver", service)
    return service


def start_daemon(env: dict[str, str], run_dir: Path) -> Service:
    argv = [_bin("dagster-daemon"), "run", "-w", str(PROJECT_ROOT / "workspace.yaml")]
    return start_service("daemon", argv, env, run_dir)


def cluster_env(run_dir: Path, *, artifact_root: str | None = None) -> dict[str, str]:
    """The environment every process of the cluster shares (S3 variables are added when moto starts)."""
    env = settings.environment() | settings.postgres_env()
    env |= {
        "DAGSTER_HOME": str(run_dir / "dagster_home"),
        "MODELREC_EXECUTOR": "celery",
        "MODELREC_CELERY_BROKER": settings.celery_broker(),
        "MODELREC_CELERY_BACKEND": settings.celery_backend(),
        "PYTHONPATH": os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p),
        # `dagster-celery worker start` runs `celery` from PATH: this environment's
        "PATH": os.pathsep.join(p for p in (str(Path(sys.executable).parent), env.get("PATH", "")) if p),
    }
    if artifact_root:
        env["MODELREC_ARTIFACT_ROOT"] = artifact_root
    return env


def start_cluster(run_dir: Path, workers: int, ui_port: int) -> dict[str, object]:
    """Start everything; returns what was started (also written to ``<run dir>/cluster.json``)."""
    run_dir = run_dir.resolve()
    if (run_dir / "pids").exists() and any((run_dir / "pids").iterdir()):
        raise click.ClickException(f"{run_dir}/pids is not empty: a cluster may be running (`make cluster-stop`)")
    env = cluster_env(run_dir)
    prepare_home(run_dir / "dagster_home")
    create_database(settings.postgres_env())
    if not env.get("AWS_ENDPOINT_URL") and not env.get("AWS_ENDPOINT_URL_S3"):
        _, aws = start_s3(run_dir, env)
        env |= aws
    if not env.get("MODELREC_ARTIFACT_ROOT", "").startswith("s3://"):
        env["MODELREC_ARTIFACT_ROOT"] = f"s3://{DEFAULT_BUCKET}/artifacts"
    started = [start_worker(f"worker{i + 1}", env, run_dir) for i in range(workers)]
    started.append(start_daemon(env, run_dir))
    started.append(start_webserver(env, run_dir, ui_port))
    info = {"ui": f"http://{HOST}:{ui_port}", "artifact_root": env["MODELREC_ARTIFACT_ROOT"],
            "s3_endpoint": env.get("AWS_ENDPOINT_URL") or env.get("AWS_ENDPOINT_URL_S3"),
            "dagster_home": env["DAGSTER_HOME"], "postgres_db": env["DAGSTER_POSTGRES_DB"],
            "broker": env["MODELREC_CELERY_BROKER"], "pids": {s.name: s.pid for s in started}}
    (run_dir / "cluster.json").write_text(json.dumps(info, indent=2))
    exported = ["DAGSTER_HOME", "MODELREC_EXECUTOR", "MODELREC_ARTIFACT_ROOT", "AWS_ENDPOINT_URL"]
    if "s3" in info["pids"] or (run_dir / "pids" / "s3.pid").exists():  # moto's stand-in keys, no secret
        exported += ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"]
    lines = [f"export {k}={shlex.quote(env[k])}" for k in exported if env.get(k)]
    (run_dir / "env.sh").write_text("# `. <this file>`: a shell that launches on this cluster\n" + "\n".join(lines) + "\n")
    return info


def stop_cluster(run_dir: Path) -> list[str]:
    """Stop every process whose PID file is in ``<run dir>/pids`` (its whole process group); returns their names."""
    stopped = []
    pids = run_dir / "pids"
    for pid_file in sorted(pids.glob("*.pid")) if pids.exists() else []:
        stop_group(int(pid_file.read_text()))
        pid_file.unlink()
        stopped.append(pid_file.stem)
    return stopped


@click.group()
def main() -> None:
    """A Dagster cluster on 127.0.0.1: PostgreSQL instance, daemon, webserver, Celery workers, S3 artifacts."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")


@main.command()
@click.option("--run-dir", type=click.Path(path_type=Path), default=Path(".work/cluster"), show_default=True)
@click.option("--workers", type=int, default=2, show_default=True)
@click.option("--port", type=int, default=3000, show_default=True)
def start(run_dir: Path, workers: int, port: int) -> None:
    """Start the cluster (every process in its own process group, PIDs in RUN_DIR/pids)."""
    try:
        info = start_cluster(run_dir, workers, port)
    except BaseException:
        stop_cluster(run_dir.resolve())
        raise
    click.echo(json.dumps(info, indent=2))


@main.command()
@click.option("--run-dir", type=click.Path(path_type=Path), default=Path(".work/cluster"), show_default=True)
def stop(run_dir: Path) -> None:
    """Stop every process of the cluster by its PID."""
    stopped = stop_cluster(run_dir.resolve())
    click.echo(f"stopped {len(stopped)} process group(s): {', '.join(stopped) or 'none'}")


if __name__ == "__main__":
    main()
