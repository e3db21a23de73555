"""Serving defaults: the UI listens on localhost only; secrets never reach config, metadata or logs.

tests/test_ui_command.py starts ``make ui`` for real and checks the listening address; here the
cheap static checks (the default host of the Makefile and the README's command) and the secrets:
environment credentials and a credentialed artifact-root URL through a real materialization.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import uuid
from pathlib import Path

import torch
from dagster import DagsterInstance
from dagster._serdes import serialize_value
from safetensors.torch import save_file
from upath import UPath

from assets.model_parameters import model_parameters
from ml_core.artifacts import redact_url, staged_directory, write_manifest
from resources.artifact_store import ArtifactStore
from resources.compute import ComputeDevice
from resources.dataset_catalog import DatasetCatalog
from resources.image_encoder import ImageEncoderResource
from resources.model_zoo import ModelZoo
from resources.performance_table import PerformanceTableResource
from tests.test_robustness_helpers import failure_text, materialize_partition, metadata_of, zoo_resources

REPO = Path(__file__).resolve().parents[1]
SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAROBUSTNESSTEST01",
    "AWS_SECRET_ACCESS_KEY": "robustness/Secret+Access+Key+0123456789",
    "AWS_SESSION_TOKEN": "robustness-session-token-abcdef",
    "HF_TOKEN": "hf_robustnessTokenXYZ",
    "GOOGLE_APPLICATION_CREDENTIALS_JSON": '{"private_key": "robustness-private-key"}',
    "DAGSTER_PG_PASSWORD": "robustness-pg-password",
}
URL_PASSWORD = "URL-S3CR3T-PASSWORD"


def test_the_ui_binds_to_localhost_by_default():
    env = {k: v for k, v in os.environ.items() if k not in ("UI_HOST", "UI_PORT")}
    dry_run = subprocess.run(["make", "-n", "ui"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert dry_run.returncode == 0, dry_run.stderr
    # make ui runs pipelines.ui, which execs `dagster dev` with the same arguments
    [command] = [line for line in dry_run.stdout.splitlines() if "pipelines.ui" in line]
    assert re.search(r"(-h|--host)[ =]127\.0\.0\.1(\s|$)", command), command
    assert "0.0.0.0" not in (REPO / "Makefile").read_text()
    readme = (REPO / "README.md").read_text()
    assert re.search(r"127\.0\.0\.1:3000.{0,40}\(bound to localhost", readme, re.S)


def test_redact_url_removes_credentials_only():
    cases = {
        "s3://AKIA:secret@bucket/root": "s3://***@bucket/root",
        "https://user:pw@host:8443/a?sig=abc&v=1&X-Amz-Signature=zz": "https://***@host:8443/a?sig=***&v=1&X-Amz-Signature=***",
        "gs://bucket/x?token=t": "gs://bucket/x?token=***",
        "/plain/local/path": "/plain/local/path",
        "memory://bucket/root": "memory://bucket/root",
        "error at s3://k:s@b/x: not found": "error at s3://***@b/x: not found",
    }
    for raw, expected in cases.items():
        assert redact_url(raw) == expected
    assert "secret" not in repr(ArtifactStore(root="s3://AKIA:secret@bucket/root"))


def _assert_clean(text: str, where: str) -> None:
    for name, value in SECRETS.items():
        assert value not in text, f"{name} leaked into {where}"
    assert URL_PASSWORD not in text, f"the artifact-root password leaked into {where}"


def test_no_secret_reaches_resources_metadata_manifests_or_logs(tmp_path, monkeypatch, caplog):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    for name in ("MODELREC_ARTIFACT_ROOT", "MODELREC_ZOO_DIR"):
        monkeypatch.delenv(name, raising=False)
    defaults = [ArtifactStore(), ModelZoo(), DatasetCatalog(), PerformanceTableResource(), ImageEncoderResource(),
                ComputeDevice()]
    for resource in defaults:
        _assert_clean(repr(resource) + json.dumps(resource.model_dump(), default=str), type(resource).__name__)

    zoo = tmp_path / "zoo"
    zoo.mkdir()
    save_file({"w": torch.randn(8)}, zoo / "m.safetensors")
    root = f"memory://robot:{URL_PASSWORD}@bucket-{uuid.uuid4().hex[:8]}/artifacts"
    resources = zoo_resources(zoo, root)
    instance = DagsterInstance.ephemeral()
    caplog.set_level(logging.INFO)  # every logger at the operational level, ours down to DEBUG
    for ours in ("ml_core", "assets", "resources", "pipelines"):
        caplog.set_level(logging.DEBUG, logger=ours)
    first = materialize_partition(model_parameters, "m", resources, instance)
    second = materialize_partition(model_parameters, "m", resources, instance)  # a cache hit
    final = UPath(root) / "probe" / "_" / ("f" * 32)
    for _ in range(2):  # the second publisher logs that the first copy is kept, with its path
        with staged_directory(final) as tmp:
            write_manifest(tmp, {"content_hash": "x"})
    assert first.success and second.success, failure_text(first) + failure_text(second)
    meta = metadata_of(first)
    assert meta["path"].startswith("memory://***@bucket-")

    _assert_clean(json.dumps([metadata_of(first), metadata_of(second)], default=str), "materialization metadata")
    for result in (first, second):
        records = instance.all_logs(result.run_id)
        _assert_clean("".join(serialize_value(r) for r in records), "the Dagster event log")
        _assert_clean(json.dumps(instance.get_run_by_id(result.run_id).run_config, default=str), "the run config")
    _assert_clean(caplog.text, "Python logs")
    assert "published by another run" in caplog.text and "***@bucket-" in caplog.text
    stored = "".join(p.read_text() for p in UPath(root).rglob("*.json"))
    _assert_clean(stored, "manifests and references")
    assert '"path": "memory://***@' in stored
