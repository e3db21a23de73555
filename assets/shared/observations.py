"""Observable source assets: the user's files (the zoo's checkpoints, the image folders) at the root of the
lineage, each partition's data version its content fingerprint.

Shared by ``assets/model_checkpoints.py`` and ``assets/image_folders.py``. ``observable_source_asset`` and
``DataVersionsByPartition`` are beta in Dagster 1.13 and print a ``BetaWarning`` on each use: silenced
here, around those calls only.

A source asset has no backfill policy, and a job mixing it with assets that have one (``dataset_tokens``:
one partition per run) warns on every load of the code location. So the source is turned into the
observable ``AssetsDefinition`` Dagster would make of it (``create_external_asset_from_source_asset``, the
conversion ``Definitions`` applies; an internal function of the pinned Dagster 1.13.27) with the same policy.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable
from typing import Any

from dagster import BackfillPolicy, BetaWarning, DataVersion, DataVersionsByPartition, observable_source_asset
from dagster._core.definitions.external_asset import create_external_asset_from_source_asset

logger = logging.getLogger(__name__)


def observable_partitioned_source(
    backfill_policy: BackfillPolicy | None = None, **kwargs: Any
) -> Callable[[Callable[..., Any]], Any]:
    """``@observable_source_asset(**kwargs)`` without the BetaWarning, as an observable ``AssetsDefinition``
    with ``backfill_policy``: the policy of the assets that read it in the same jobs."""

    def decorate(fn: Callable[..., Any]) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BetaWarning)
            warnings.simplefilter("ignore", DeprecationWarning)  # the conversion reads OpDefinition.version
            source = observable_source_asset(**kwargs)(fn)
            return create_external_asset_from_source_asset(source).with_attributes(backfill_policy=backfill_policy)

    return decorate


def observed_versions(
    keys: Iterable[str], fingerprint: Callable[[str], str], log: logging.Logger | Any = logger
) -> DataVersionsByPartition:
    """``{partition: DataVersion(fingerprint(partition))}`` for ``keys``; a partition whose files cannot be
    read (removed, unreadable) is left out with a warning: its materialization reports the error."""
    versions: dict[str, DataVersion] = {}
    for key in keys:
        try:
            versions[key] = DataVersion(fingerprint(key))
        except Exception as error:  # noqa: BLE001 - any unreadable input spoils only its own partition
            log.warning(f"{key}: not observed ({type(error).__name__}: {error})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BetaWarning)
        return DataVersionsByPartition(versions)
