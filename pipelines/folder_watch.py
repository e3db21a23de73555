"""What changed in a watched folder since the last sensor tick (pure, cheap: stat only)."""

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Fingerprint = list[Any]


def file_fingerprint(path: Path) -> Fingerprint:
    """``[size, mtime_ns]`` of a file, ``[-1, -1]`` when it cannot be read (one ``stat`` call)."""
    try:
        stat = path.stat()
    except OSError:
        return [-1, -1]
    return [stat.st_size, stat.st_mtime_ns]


@dataclass(frozen=True)
class FolderChanges:
    """Keys to add (``new``), to re-run (``changed``), to drop (``removed``)."""

    new: list[str]
    changed: list[str]
    removed: list[str]


def diff_folder(
    current: Mapping[str, Fingerprint], previous: Mapping[str, Fingerprint] | None, registered: set[str]
) -> FolderChanges:
    """Compare the folder's entries with the last tick's (``previous``, :mod:`pipelines.sensor_cursor`)
    and the registered partitions.

    * ``new``: in the folder, not a partition yet;
    * ``changed``: a partition whose fingerprint differs from the last tick's (replaced or
      touched file; the asset's content-hash cache turns a touch without change into a no-op);
    * ``removed``: a partition whose entry is gone from the folder.

    On the first tick (``previous`` None) already registered entries are only recorded: they are not
    re-run (the re-embedding schedule takes care of missing or stale ones).
    """
    new = sorted(k for k in current if k not in registered)
    changed = (
        []
        if previous is None
        else sorted(k for k in current if k in registered and k in previous and list(previous[k]) != list(current[k]))
    )
    removed = sorted(k for k in registered if k not in current)
    return FolderChanges(new, changed, removed)
