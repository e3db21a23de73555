"""A weight embedder's extra training corpus: more weights of the same runs than the zoo holds.

The hyper-representation model zoos (Schürholt et al.) train on every epoch of every run, not only on
the final checkpoints. A corpus folder holds, per zoo model, other checkpoints of the run that made it
(the built-in world's ``snapshots/``, see :mod:`worlds.zoo`)::

    <folder>/<model>/<any name>.safetensors|.pt   (+ optional <any name>.json card)

Each is flattened once into the same zarr format as a zoo model
(:func:`~ml_core.weights.parameters.write_model_parameters`) and handed to
:func:`~ml_core.weights.embedders.train_embedder` as ``corpus``: a model's corpus is used only where
the model itself is on the training side (:func:`~ml_core.weights.autoencoder.with_corpus`), so no
run is ever split across a held-out fold. A corpus checkpoint is never embedded, ranked or listed.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from ml_core.artifacts import read_json, sha256_file
from ml_core.progress import progress
from ml_core.weights.checkpoints import CHECKPOINT_SUFFIXES, CheckpointError, open_checkpoint
from ml_core.weights.flatten import CHUNK_SIZE
from ml_core.weights.parameters import ModelParameters, read_model_parameters, write_model_parameters

logger = logging.getLogger(__name__)


class CorpusError(ValueError):
    """A corpus folder or file that cannot be used; the message names it."""


def discover_corpus(folder: Path) -> dict[str, list[Path]]:
    """``{model: [checkpoint, ...]}`` of a corpus folder, sorted by name. A sidecar card that names
    another model (``snapshot_of``) than its folder is an error naming the card."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CorpusError(f"{folder}: corpus folder not found")
    stray = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES)
    if stray:
        raise CorpusError(f"{folder / stray[0]}: a corpus checkpoint must lie in a folder named after its zoo model")
    corpus: dict[str, list[Path]] = {}
    for run in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(p for p in run.iterdir() if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES)
        for path in files:
            card = path.with_suffix(".json")
            named = read_json(card).get("snapshot_of", run.name) if card.is_file() else run.name
            if named != run.name:
                raise CorpusError(f"{card}: snapshot_of is {named!r} but the card lies in the folder of {run.name!r}")
        if files:
            corpus[run.name] = files
    return corpus


def flatten_corpus(
    corpus: dict[str, list[Path]], cache_dir: Path, *, chunk_size: int = CHUNK_SIZE
) -> dict[str, list[ModelParameters]]:
    """Every corpus checkpoint flattened (zarr, as a zoo model's parameters), read back lazily.

    Flattened once: each lands at ``<cache_dir>/<model>/<stem>-<sha256[:16]>.zarr``, written under a
    temporary name and renamed, so a checkpoint whose bytes change gets a new entry and an interrupted
    run leaves nothing half-written behind a valid name."""
    cache_dir = Path(cache_dir)
    out: dict[str, list[ModelParameters]] = {}
    jobs = [(model, path) for model, paths in corpus.items() for path in paths]
    for model, path in progress(jobs, desc="flattening corpus", leave=False):
        target = cache_dir / model / f"{path.stem}-{sha256_file(path)[:16]}.zarr"
        if not target.is_dir():
            partial = target.with_name(f".{target.name}.partial")
            shutil.rmtree(partial, ignore_errors=True)
            partial.parent.mkdir(parents=True, exist_ok=True)
            try:
                with open_checkpoint(path) as reader:
                    write_model_parameters(reader, partial, chunk_size=chunk_size,
                                           source={"path": path.name, "corpus_of": model})
            except CheckpointError as err:
                shutil.rmtree(partial, ignore_errors=True)
                raise CorpusError(str(err)) from err
            partial.rename(target)
        out.setdefault(model, []).append(read_model_parameters(target))
    logger.info("corpus: %d checkpoints of %d models", len(jobs), len(out))
    return out


__all__ = ["CorpusError", "discover_corpus", "flatten_corpus"]
