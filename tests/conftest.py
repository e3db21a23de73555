"""Shared test settings (offline, quiet, deterministic) and the worlds the test modules share."""

import os
import tempfile

import pytest
import torch

from worlds import World, build_world

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MODELREC_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
# no test reads a developer's results folder (.work/results): a folder nobody creates, unless a test gives its own
os.environ["MODELREC_RESULTS_DIR"] = os.path.join(tempfile.gettempdir(), f"modelrec-tests-no-results-{os.getpid()}")


@pytest.fixture(scope="session")
def reduced_world(tmp_path_factory) -> World:
    """The REDUCED demo world (5 models, 4 datasets), built once per session and shared; never modify it
    (copy it first: ``shutil.copytree``)."""
    return build_world(tmp_path_factory.getbasetemp() / "reduced_world", scale="reduced", seed=0)


@pytest.fixture(scope="session")
def standin_world(tmp_path_factory) -> World:
    """The STAND-IN world (6 small models, ``.pt`` checkpoints, a probe table, a random open_clip
    encoder), built once per session and shared by the pipeline tests; never modify it."""
    return build_world(tmp_path_factory.getbasetemp() / "standin_world", scale="standin", seed=0)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors: one intra-op thread avoids thread-handoff stalls on a busy 2-core machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _clear_dagster_state_storage() -> None:
    """Collect garbage first, then clear Dagster's "current definitions-state storage".

    Dagster keeps that storage in a context variable, entered by an instance's context manager; a
    context left open by an earlier module (its generators not yet collected) resets the variable
    when the garbage collector finally closes it, to the storage of an instance disposed since:
    the next materialization then fails with "undefined DagsterInstance weakref". Seen once in a
    full run, in the middle of test_pipeline, after test_operations. Collecting first makes those
    resets happen here, and the variable is then set to None (not reset to a stale earlier value).
    """
    import gc

    from dagster._core.storage.defs_state.base import _current_storage

    gc.collect()
    _current_storage.set(None)


@pytest.fixture(scope="module", autouse=True)
def _fresh_dagster_state_storage():
    """Every module starts, and leaves, with no definitions-state storage, as a fresh process would."""
    _clear_dagster_state_storage()
    yield
    _clear_dagster_state_storage()
