"""Progress bars on long loops: tqdm, shown on a terminal only, off wherever ``TQDM_DISABLE`` is set.

``TQDM_DISABLE`` is tqdm's own switch (the tests set it); the project's settings are read by
``resources/settings.py`` alone.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_disabled() -> bool | None:
    """True when ``TQDM_DISABLE`` is set; else None: tqdm shows bars on a terminal only."""
    return True if os.environ.get("TQDM_DISABLE", "") not in ("", "0") else None


def progress(iterable: Iterable[T] | None = None, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)`` with :func:`progress_disabled` as its ``disable`` default."""
    kwargs.setdefault("disable", progress_disabled())
    return tqdm(iterable, **kwargs)
