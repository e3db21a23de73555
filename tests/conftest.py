"""Shared test settings: offline, quiet, deterministic."""

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MODELREC_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors: one intra-op thread avoids thread-handoff stalls on a busy 2-core machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module", autouse=True)
def _fresh_dagster_state_storage():
    """Dagster keeps "the current" definitions-state storage in a context variable that an
    instance used by an earlier test module (and gone since) can leave behind; every module
    starts with none, as a fresh process would."""
    from dagster._core.storage.defs_state.base import set_defs_state_storage

    with set_defs_state_storage(None):
        yield
