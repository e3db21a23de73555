"""Artifact paths on a local disk or any fsspec filesystem, published atomically.

Every artifact is a directory (or a single file) that is first written under a temporary
sibling name and then renamed into place, with a ``manifest.json`` written last inside it.
A reader treats a directory without a manifest as absent, so an interrupted write is never
read as valid. Paths are :class:`upath.UPath`, so ``s3://``, ``gs://`` and ``memory://`` roots
go through the same code as local folders. On a local disk the publication is one atomic
``rename``; on an object store (no atomic directory rename) every file is moved first and the
manifest last, so a reader still never sees a manifest before the data, and publishers of one
key take turns through an exclusive claim object (``<final>/.publishing``, S3's conditional put):
one moves its files in while the others wait for its manifest, and nothing under a final path is
ever deleted (see :func:`_publish_on_object_store`).

Leftovers of killed runs (``.<name>.tmp-<32 hex>``) are removed by
:func:`collect_stale_temporaries`, which decides from the storage alone, with no lock and no
assumption that the writer runs on this machine: a live staging directory holds a
``.heartbeat`` file that its writer rewrites every :data:`HEARTBEAT_SECONDS`, so only entries
whose last sign of life is older than a threshold (hours by default) are ever removed, and a
writer whose directory was removed under it refuses to publish.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import zarr
import zarr.storage
from pydantic import BaseModel
from upath import UPath

logger = logging.getLogger(__name__)
ManifestT = TypeVar("ManifestT", bound=BaseModel)

MANIFEST_NAME = "manifest.json"
HEARTBEAT_NAME = ".heartbeat"
#: how often a staging directory's writer proves it is alive (seconds).
HEARTBEAT_SECONDS = 30.0
#: default age (seconds since the last sign of life) after which a staging leftover is removed.
STALE_AFTER_SECONDS = 6 * 3600.0
#: on an object store, inside a final directory: the claim of the publisher moving its files in.
CLAIM_NAME = ".publishing"
#: how often that publisher rewrites its claim while it moves files (seconds).
CLAIM_BEAT_SECONDS = 2.0
#: a claim seen unchanged this long (on the waiting publisher's own clock) belongs to a dead publisher (seconds).
CLAIM_STALE_SECONDS = 30.0
_CLAIM_POLL_SECONDS = 0.2
_TMP_MARK = ".tmp-"
_TMP_NAME = re.compile(r"^\..+\.tmp-[0-9a-f]{32}$")
_SECRET_QUERY = re.compile(
    r"(?i)^(x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|x-goog-credential|sig|signature|"
    r"token|access_token|sas|password|passwd|secret|key|api_key|apikey|se|sv|sp)$"
)


def as_upath(path: str | os.PathLike[str] | UPath) -> UPath:
    """Return ``path`` as a UPath (a local path stays a local path)."""
    return path if isinstance(path, UPath) else UPath(path)


def is_local(path: UPath) -> bool:
    return getattr(path, "protocol", "") in ("", "file", "local")


def store_root(url: str | os.PathLike[str] | UPath) -> UPath:
    """The root of a store that other processes write to at the same time: on an object store
    (``s3://``, ``gs://``, ...) the filesystem caches no listings, since a cached listing hides what
    another worker published meanwhile (s3fs then answers ``exists() == False`` for a published
    artifact without asking the store). Local and ``memory://`` paths are returned as they are."""
    path = as_upath(url)
    if is_local(path) or path.protocol == "memory":
        return path
    return UPath(str(path), **{**path.storage_options, "use_listings_cache": False})


def zarr_store(path: UPath, *, read_only: bool = False) -> zarr.abc.store.Store:
    """A zarr v3 store rooted at ``path``: LocalStore for local paths, FsspecStore otherwise."""
    path = as_upath(path)
    if is_local(path):
        return zarr.storage.LocalStore(Path(path.path), read_only=read_only)
    return zarr.storage.FsspecStore.from_url(str(path), storage_options=dict(path.storage_options) or None,
                                             read_only=read_only)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: UPath | Path, block_size: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, read in blocks (memory bounded)."""
    digest = hashlib.sha256()
    with as_upath(path).open("rb") as handle:
        while block := handle.read(block_size):
            digest.update(block)
    return digest.hexdigest()


def stable_json(value: Any) -> str:
    """Canonical JSON (sorted keys, no spaces) used for hashing configs and manifests."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def hash_parts(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts (cache keys, data versions)."""
    return sha256_bytes(stable_json(list(parts)).encode())[:32]


def redact_url(text: str | os.PathLike[str]) -> str:
    """``text`` with credentials removed from any URL in it: user info and secret query values.

    ``s3://AKIA:secret@bucket/x`` -> ``s3://***@bucket/x``;
    ``https://host/x?sig=abc&v=1`` -> ``https://host/x?sig=***&v=1``. Plain paths are unchanged.
    """

    def clean(match: re.Match[str]) -> str:
        url = match.group(0)
        try:
            parts = urlsplit(url)
        except ValueError:
            return url
        netloc = parts.netloc
        if "@" in netloc:
            netloc = "***@" + netloc.rsplit("@", 1)[1]
        query = "&".join(
            f"{k}=***" if _SECRET_QUERY.match(k) else (f"{k}={v}" if sep else k)
            for k, sep, v in (item.partition("=") for item in parts.query.split("&") if item)
        )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))

    return re.sub(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+", clean, str(text))


def write_json(path: UPath, value: Any) -> None:
    """Write JSON to ``path`` through a temporary sibling then rename.

    Atomic on local disks (``os.replace``) and on object stores (one object written whole): a
    reader sees the old or the new content, never a mix. A failed write leaves no temporary.
    """
    path = as_upath(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{_TMP_MARK}{uuid.uuid4().hex}")
    try:
        tmp.write_text(json.dumps(value, indent=2, sort_keys=True, default=str))
        _rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            remove_tree(tmp)
        raise


def read_json(path: UPath) -> Any:
    return json.loads(as_upath(path).read_text())


def read_manifest(directory: UPath) -> dict[str, Any] | None:
    """The manifest of a published artifact directory, or None if absent or unreadable."""
    path = as_upath(directory) / MANIFEST_NAME
    try:
        value = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError, OSError):
        return None
    return value if isinstance(value, dict) else None


def _rename(src: UPath, dst: UPath) -> None:
    """Move the file ``src`` to ``dst``, replacing it (one ``os.replace`` locally; one object written whole
    on an object store). Directories on object stores go through :func:`_publish_on_object_store`."""
    if is_local(src):
        os.replace(src.path, dst.path)
    else:
        src.fs.mv(src.path, dst.path)


def remove_tree(path: UPath) -> None:
    path = as_upath(path)
    with contextlib.suppress(FileNotFoundError):
        if is_local(path):
            import shutil

            p = Path(path.path)
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
        elif path.fs.exists(path.path):
            path.fs.rm(path.path, recursive=True)


class _Heartbeat:
    """Rewrites the file ``path`` every ``period`` seconds, from a daemon thread, with ``"<token> <count>"``.

    Two uses: ``<staging directory>/.heartbeat`` (its age tells :func:`collect_stale_temporaries` that the
    writer is alive) and an object-store publisher's claim (its changing content tells a waiting publisher
    the same). ``token`` given: the file was already written by the caller (the exclusive claim).
    ``lost`` becomes True if the file disappears or holds another token (the staging directory was
    garbage-collected, or the claim taken over, while its writer was silent too long): the writer must
    not publish.
    """

    def __init__(self, path: UPath, period: float, *, token: str | None = None):
        self.path = path
        self.token = token or uuid.uuid4().hex
        self.period = period
        self.beats = 0
        self.lost = False
        self._done = threading.Event()
        if token is None:
            self.path.write_text(self._content())
        self._thread = threading.Thread(target=self._run, name="staging-heartbeat", daemon=True)
        self._thread.start()

    def _content(self) -> str:
        return f"{self.token} {self.beats}"

    def _ours(self) -> bool:
        """True while the file holds our token; FileNotFoundError and other OSErrors propagate."""
        return self.path.read_text().split(" ", 1)[0] == self.token

    def _run(self) -> None:
        while not self._done.wait(self.period):
            try:
                if not self._ours():
                    self.lost = True
                    return
                self.beats += 1
                self.path.write_text(self._content())
            except FileNotFoundError:
                self.lost = True
                return
            except OSError as error:  # a transient store error: try again next period
                logger.debug("heartbeat %s: %s", redact_url(self.path), error)

    def stop(self, *, remove: bool = True) -> bool:
        """Stop beating; True if the file is still ours (never lost). ``remove``: delete it (when ours)."""
        self._done.set()
        self._thread.join()
        try:
            alive = not self.lost and self._ours()
        except OSError:  # FileNotFoundError included
            alive = False
        if remove and alive:
            with contextlib.suppress(OSError):
                self.path.unlink()
        return alive


def _wait_for_claim(claim: UPath, final: UPath) -> None:
    """Wait while another publisher holds ``claim`` and ``final`` has no manifest; return when the manifest
    is there, the claim is gone, or the claim went unchanged for :data:`CLAIM_STALE_SECONDS` (its holder
    died mid-move: the claim is then removed, for the caller to take)."""
    seen, since = None, time.monotonic()
    while read_manifest(final) is None:
        try:
            content = claim.read_text()
        except FileNotFoundError:
            return
        if content != seen:
            seen, since = content, time.monotonic()
        elif time.monotonic() - since > CLAIM_STALE_SECONDS:
            logger.warning("%s: its publisher's claim has not changed for %.0f s (publisher gone?); taking over",
                           redact_url(final), CLAIM_STALE_SECONDS)
            with contextlib.suppress(FileNotFoundError):
                claim.unlink()
            return
        time.sleep(_CLAIM_POLL_SECONDS)


def _publish_on_object_store(tmp: UPath, final: UPath) -> bool:
    """Move the files of the staged directory ``tmp`` into ``final`` on an object store, the manifest last;
    True if ours was published, False if another publisher's copy was (``tmp`` is then left to the caller).

    An object store has no atomic directory rename and no directories: two publishers of one key (two runs
    of one partition at once) both find no manifest and both move files in. A publisher must therefore never
    delete anything under ``final`` ("an unpublished leftover") nor treat a half-filled ``final`` as an
    error: the other may be moving its files in at that moment, and a manifest would then be published over
    deleted files. Publishers take turns instead: the one that creates ``final/.publishing`` exclusively
    (``mode="create"``: S3's ``If-None-Match: *``) moves every file in (overwriting any left by a dead one)
    while rewriting its claim every :data:`CLAIM_BEAT_SECONDS`, then the manifest, then removes the claim;
    the others wait for that manifest and keep that copy (:func:`_wait_for_claim`).
    """
    claim = final / CLAIM_NAME
    fs = final.fs
    root, into = tmp.path.rstrip("/"), final.path.rstrip("/")
    manifest = f"{root}/{MANIFEST_NAME}"  # present: checked by staged_directory
    while read_manifest(final) is None:
        token = uuid.uuid4().hex
        try:
            fs.pipe_file(claim.path, f"{token} 0".encode(), mode="create")
        except FileExistsError:
            _wait_for_claim(claim, final)
            continue
        beat = _Heartbeat(claim, CLAIM_BEAT_SECONDS, token=token)
        try:
            for file in fs.find(tmp.path):
                if file != manifest:
                    fs.mv(file, into + file[len(root) :])
        except BaseException:
            beat.stop()  # the claim released at once (when still ours): the next publisher need not wait
            raise
        if not beat.stop(remove=False):  # silent too long, taken over: the new holder publishes its whole copy
            logger.warning("%s: lost the publication claim while moving files in; waiting for the other copy",
                           redact_url(final))
            continue
        fs.mv(manifest, f"{into}/{MANIFEST_NAME}")
        with contextlib.suppress(FileNotFoundError):
            fs.rm(claim.path)
        with contextlib.suppress(FileNotFoundError):
            fs.rm(tmp.path, recursive=True)
        return True
    return False


def _publish_locally(tmp: UPath, final: UPath) -> bool:
    """Rename ``tmp`` to ``final`` (atomic); True if ours was published, False if another copy was. A local
    ``final`` without a manifest was never published (the rename is atomic and the manifest is in ``tmp``
    before it): an unpublished leftover, removed only after our rename failed on it."""
    for attempt in range(2):
        try:
            os.rename(tmp.path, final.path)  # fails if final is a non-empty directory
            return True
        except OSError:
            if read_manifest(final) is not None:
                return False
            if attempt:
                raise
            remove_tree(final)
    return False


@contextlib.contextmanager
def staged_directory(final: UPath) -> Iterator[UPath]:
    """Yield a temporary directory that is renamed to ``final`` when the block succeeds.

    The caller writes everything, then :func:`write_manifest` last. On error the temporary
    directory is removed and ``final`` is untouched. If ``final`` already holds a published
    artifact (a concurrent run with the same content-addressed key won), ours is discarded.
    While the block runs, a heartbeat file in the temporary directory tells
    :func:`collect_stale_temporaries` that it is alive.
    """
    final = as_upath(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}{_TMP_MARK}{uuid.uuid4().hex}"
    tmp.mkdir(parents=True, exist_ok=False)
    heartbeat = _Heartbeat(tmp / HEARTBEAT_NAME, HEARTBEAT_SECONDS)
    try:
        try:
            yield tmp
        finally:
            still_ours = heartbeat.stop()
        if not still_ours:
            raise RuntimeError(
                f"{redact_url(tmp)}: the staging directory was removed while being written (garbage-collected "
                f"after a long silence?); refusing to publish a possibly incomplete artifact"
            )
        if read_manifest(tmp) is None:
            raise RuntimeError(f"{redact_url(tmp)}: artifact has no {MANIFEST_NAME}; refusing to publish it")
        if read_manifest(final) is not None:
            published = False
        elif is_local(final):
            published = _publish_locally(tmp, final)
        else:
            published = _publish_on_object_store(tmp, final)
        if not published:
            logger.info("%s published by another run; keeping that copy", redact_url(final))
            remove_tree(tmp)
    except BaseException:
        remove_tree(tmp)
        raise


def _modified(path: UPath) -> float | None:
    """Modification time (Unix seconds) of a file or folder, or None when the store cannot say."""
    try:
        if is_local(path):
            return os.stat(path.path).st_mtime
        value = path.fs.modified(path.path)
    except (FileNotFoundError, NotImplementedError, OSError, ValueError, TypeError, AttributeError):
        return None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
    return float(value) if isinstance(value, int | float) else None


def _last_sign_of_life(entry: UPath) -> float | None:
    """When a staging entry was last written: its heartbeat, else the newest time in its tree."""
    if not entry.is_dir():
        return _modified(entry)
    beat = _modified(entry / HEARTBEAT_NAME)
    if beat is not None:
        return beat
    times = [_modified(entry)]
    if is_local(entry):
        for folder, dirs, files in os.walk(entry.path):
            times.extend(_modified(as_upath(os.path.join(folder, n))) for n in dirs + files)
    else:
        times.extend(_modified(entry / f[len(entry.path.rstrip("/")) + 1 :]) for f in entry.fs.find(entry.path))
    known = [t for t in times if t is not None]
    return max(known) if known else None


def collect_stale_temporaries(
    directory: UPath, *, older_than_s: float = STALE_AFTER_SECONDS, now: float | None = None
) -> list[UPath]:
    """Remove staging leftovers directly in ``directory``; returns what was removed.

    Only entries named like our temporaries (``.<name>.tmp-<32 hex>``) whose last sign of life
    (heartbeat, else newest modification time inside) is more than ``older_than_s`` seconds
    before ``now`` are removed; an entry whose age the store cannot tell is kept. A live writer
    refreshes its heartbeat every :data:`HEARTBEAT_SECONDS`, so with a threshold well above
    that (the default is hours) a running write is never removed, whichever machine runs it.
    """
    directory = as_upath(directory)
    now = time.time() if now is None else now
    try:
        children = list(directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    for child in children:
        if not _TMP_NAME.match(child.name):
            continue
        last = _last_sign_of_life(child)
        if last is None or now - last < older_than_s:
            continue
        logger.info("removing staging leftover %s (last written %.0f s ago)", redact_url(child), now - last)
        remove_tree(child)
        removed.append(child)
    return removed


def write_manifest(directory: UPath, manifest: dict[str, Any]) -> None:
    """Write the manifest that marks ``directory`` complete; call it last."""
    write_json(as_upath(directory) / MANIFEST_NAME, manifest)


def first_changed_file(root: Path, files: dict[str, str]) -> str | None:
    """The first of ``files`` (path relative to ``root`` -> sha256) that is missing or changed, or None."""
    for rel, digest in files.items():
        file = Path(root) / rel
        if not file.is_file() or sha256_file(file) != digest:
            return rel
    return None


def read_valid_manifest(path: Path, model: type[ManifestT]) -> ManifestT | None:
    """The JSON at ``path`` validated as ``model``; None when it is absent or unreadable (logged)."""
    if not path.is_file():
        return None
    try:
        return model.model_validate(read_json(path))
    except (OSError, ValueError) as err:  # unreadable JSON or a ValidationError
        logger.warning("%s: unreadable world manifest, rebuilding (%s)", path, err)
        return None
