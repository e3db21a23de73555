"""Safe, stable, unique partition keys (and path components) from user-given names."""

from __future__ import annotations

import hashlib
import re
import unicodedata

MAX_KEY_LENGTH = 64
_SAFE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def partition_key(name: str) -> str:
    """A key made of ``[a-z0-9_-]`` that is safe as a path component and a Dagster partition key.

    A name that is already safe (lower-case letters, digits, ``_`` and ``-``, at most 64 chars)
    is its own key. Any other name gets a readable slug plus 8 hex digits of the SHA-256 of the
    exact name, so two names that slug alike (``My Model`` and ``my-model``) still get different
    keys, and a name's key never depends on which other names exist.
    """
    if not name or not name.strip():
        raise ValueError("empty name cannot become a partition key")
    if _SAFE.match(name) and len(name) <= MAX_KEY_LENGTH:
        return name
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9_-]+", "-", ascii_name.lower()).strip("-_")
    slug = re.sub(r"-{2,}", "-", slug)[: MAX_KEY_LENGTH - 9].strip("-_") or "x"
    return f"{slug}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def is_safe_key(key: str) -> bool:
    """True for keys :func:`partition_key` can return (safe as one path component)."""
    return bool(_SAFE.match(key)) and len(key) <= MAX_KEY_LENGTH
