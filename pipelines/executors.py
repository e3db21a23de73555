"""Which executor runs the steps of the graph's jobs: the ``MODELREC_EXECUTOR`` setting, mapped here.

* unset: Dagster's default (multiprocess, or in-process for a single step), as on one machine;
* ``in_process`` / ``multiprocess``: Dagster's own executors, named explicitly;
* ``k8s``: every step a Kubernetes Job (``dagster_k8s.k8s_job_executor``), configured by
  ``deploy/k8s/executor.yaml`` (its ``execution.config``, fixed when the code location loads).

The setting is read in ``resources/settings.py``; :func:`executor_for` is what ``Definitions`` gets.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from dagster import ExecutorDefinition, in_process_executor, multiprocess_executor

#: the k8s_job_executor's configuration, beside the Helm values (``deploy/k8s/values.yaml``)
K8S_EXECUTOR_CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "k8s" / "executor.yaml"


def k8s_executor_config(path: Path = K8S_EXECUTOR_CONFIG) -> dict[str, Any]:
    """The ``execution.config`` section of the k8s executor's YAML file."""
    document = yaml.safe_load(path.read_text()) or {}
    return dict((document.get("execution") or {}).get("config") or {})


def _k8s() -> ExecutorDefinition:
    from dagster_k8s import k8s_job_executor  # the cluster extra: imported only when selected

    return k8s_job_executor.configured(k8s_executor_config(), name="k8s")


#: setting -> executor (None: Dagster's default). The Celery option adds its own entry here.
EXECUTORS: dict[str, Callable[[], ExecutorDefinition | None]] = {
    "": lambda: None,
    "default": lambda: None,
    "in_process": lambda: in_process_executor,
    "multiprocess": lambda: multiprocess_executor,
    "k8s": _k8s,
}


def executor_for(kind: str) -> ExecutorDefinition | None:
    """The executor for a ``MODELREC_EXECUTOR`` value; a ValueError names the known ones."""
    try:
        make = EXECUTORS[kind]
    except KeyError:
        known = ", ".join(k for k in EXECUTORS if k)
        raise ValueError(f"MODELREC_EXECUTOR={kind!r}: unknown executor (known: {known})") from None
    return make()
