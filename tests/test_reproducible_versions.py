"""The same inputs give the same data version in every process, whatever its thread settings.

A cluster runs each step in some worker process, with its own ``OMP_NUM_THREADS`` and torch threads; a
data version that depends on the process (a wall-clock time in the hashed payload, floats whose last
bits depend on the BLAS thread count) would differ between a local run and a cluster run, and between
two cluster runs (``transferability_scores`` did, 2026-12-03). Here two fresh processes, one on one
thread and one on two, each on its own new artifact store, materialize the same partition.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ml_core.ground_truth import transferability_content
from tests.pipeline_helpers import world_env

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATASET = "sample_photos"  # LogME's last bits moved most on this one with two BLAS threads

MATERIALIZE = """
import json, sys
import torch
torch.set_num_threads(int(sys.argv[1]))
from dagster import DagsterInstance
from assets.shared.partitions import DATASETS
from pipelines.runner import materialize_all
records = materialize_all(DagsterInstance.ephemeral(), stages=[("transferability_scores", DATASETS)],
                          only_partitions={DATASETS: [sys.argv[2]]}, executor="in_process")
print(json.dumps([[r.partition, r.data_version, r.cache_hit] for r in records]))
"""


def _materialize_in_a_new_process(world, root: Path, threads: int) -> tuple[str, dict]:
    env = os.environ | world_env(world, root) | {
        "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(PROJECT_ROOT), "TQDM_DISABLE": "1",
    }
    out = subprocess.run([sys.executable, "-c", MATERIALIZE, str(threads), DATASET], env=env, cwd=PROJECT_ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    ((partition, version, cache_hit),) = json.loads(out.stdout.strip().splitlines()[-1])
    assert (partition, cache_hit) == (DATASET, False)  # computed here, not found in a cache
    (scores_file,) = root.glob(f"transferability_scores/{DATASET}/*/transferability_scores.json")
    return version, json.loads(scores_file.read_text())["scores"]


@pytest.mark.slow
def test_transferability_scores_has_one_data_version_across_processes_and_thread_counts(reduced_world, tmp_path):
    one_version, one = _materialize_in_a_new_process(reduced_world, tmp_path / "one_thread", threads=1)
    two_version, two = _materialize_in_a_new_process(reduced_world, tmp_path / "two_threads", threads=2)
    assert set(one) == set(two) and len(one) >= 3
    for model in one:  # the scores bitwise equal; only the measured seconds may differ
        timing = {"forward_seconds"}
        assert {k: v for k, v in one[model].items() if k not in timing} == \
               {k: v for k, v in two[model].items() if k not in timing}, model
    assert one_version == two_version


def test_the_column_hash_reads_the_scores_not_the_seconds():
    scores = {"m1": {"logme": -0.61394504891, "h_score": 1.7, "probe": 0.5, "forward_seconds": 0.25}}
    problems = {"m2": "no card"}
    slower = {"m1": scores["m1"] | {"forward_seconds": 3.5}}
    other = {"m1": scores["m1"] | {"logme": -0.61394504892}}
    assert transferability_content(scores, problems) == transferability_content(slower, problems)
    assert transferability_content(scores, problems) != transferability_content(other, problems)
    assert transferability_content(scores, problems) != transferability_content(scores, {})


def test_the_evaluation_hash_reads_the_rows_not_their_seconds():
    import pandas as pd

    from ml_core.evaluation import EvaluationResult

    rows = pd.DataFrame({"dataset": ["a", "b"], "method": ["prior", "logme"], "weighted_tau_truth": [0.4, 0.5],
                         "seconds": [0.0, 1.25]})
    result = EvaluationResult(rows=rows, selected_variant="base", variant_validation={})
    slower = EvaluationResult(rows=rows.assign(seconds=[0.0, 9.5]), selected_variant="base", variant_validation={})
    better = EvaluationResult(rows=rows.assign(weighted_tau_truth=[0.4, 0.6]), selected_variant="base",
                              variant_validation={})
    assert result.content_hash() == slower.content_hash()
    assert result.content_hash() != better.content_hash()
