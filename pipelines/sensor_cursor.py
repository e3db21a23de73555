"""A folder sensor's cursor: the digest of the folder's fingerprints; the fingerprints in the instance.

Dagster writes a sensor's cursor into the row of every tick and keeps skipped ticks 7 days (the
ones that launch runs for ever). A cursor holding every file's ``[size, mtime]`` is 50 bytes per
file: 0.5 MB at 10,000 files, about 10 GB of tick rows a week at one tick per 30 s (measured by
``benchmarks/rehearsal.py``). So the fingerprints go to the instance's key-value store (the
``kvs`` table of its run storage: sqlite or PostgreSQL), written only when the folder changed, and
the cursor is their digest (~40 bytes). An unchanged folder, the common tick, neither reads nor
writes the store. A cursor of the former kind (the fingerprints themselves, JSON) is still read.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping

from dagster import DagsterInstance

from pipelines.folder_watch import Fingerprint

logger = logging.getLogger(__name__)

PREFIX = "fp1:"  # cursor = PREFIX + the digest of the fingerprints' JSON


def _payload(current: Mapping[str, Fingerprint]) -> str:
    return json.dumps(dict(current), sort_keys=True, separators=(",", ":"))


def _key(sensor: str, digest: str) -> str:
    return f"modelrec/{sensor}/fingerprints/{digest}"


def cursor_for(current: Mapping[str, Fingerprint]) -> str:
    """The cursor of a folder whose fingerprints are ``current``."""
    return PREFIX + hashlib.sha256(_payload(current).encode()).hexdigest()[:32]


def previous_fingerprints(instance: DagsterInstance, sensor: str, cursor: str | None,
                          current: Mapping[str, Fingerprint]) -> dict[str, Fingerprint] | None:
    """The fingerprints the last tick recorded (None: no usable cursor, treated as a first tick)."""
    if not cursor:
        return None
    if cursor.startswith("{"):  # a cursor written before the fingerprints moved to the store
        return json.loads(cursor)
    if cursor == cursor_for(current):  # nothing changed: no read
        return dict(current)
    key = _key(sensor, cursor.removeprefix(PREFIX))
    stored = instance.run_storage.get_cursor_values({key}).get(key)
    if not stored:
        logger.warning("%s: the fingerprints of cursor %s are gone; this tick only records the folder", sensor, cursor)
        return None
    return json.loads(stored)


def record_fingerprints(instance: DagsterInstance, sensor: str, previous_cursor: str | None,
                        current: Mapping[str, Fingerprint]) -> str:
    """Store ``current`` when it changed and free the previous copy; return the new cursor."""
    cursor = cursor_for(current)
    if cursor != previous_cursor:
        pairs = {_key(sensor, cursor.removeprefix(PREFIX)): _payload(current)}
        if previous_cursor and previous_cursor.startswith(PREFIX):
            pairs[_key(sensor, previous_cursor.removeprefix(PREFIX))] = ""  # the store has no delete: empty it
        instance.run_storage.set_cursor_values(pairs)
    return cursor
