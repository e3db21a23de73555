"""Storage, naming and fingerprints: how artifacts are written, named and recognised.

The bottom layer of :mod:`ml_core`: it imports nothing else of the project.

* :mod:`~ml_core.artifacts.storage`: UPath folders published atomically (temporary path,
  manifest last, rename), JSON helpers, content hashes, redaction of credentials in URLs;
* :mod:`~ml_core.artifacts.cache`: content-addressed caching over a store (look the key up, else build,
  stage and publish), shared by the assets and ml_core's own cached artifacts;
* :mod:`~ml_core.artifacts.naming`: safe, stable partition keys from user-given names;
* :mod:`~ml_core.artifacts.fingerprints`: one content fingerprint per input file or folder, cached
  by (path, size, mtime).
"""

from ml_core.artifacts.cache import ArtifactStoreLike, build_cached, cache_key_of
from ml_core.artifacts.fingerprints import FingerprintCache, folder_content_fingerprint, folder_listing
from ml_core.artifacts.naming import MAX_KEY_LENGTH, is_safe_key, partition_key
from ml_core.artifacts.storage import (
    HEARTBEAT_NAME,
    HEARTBEAT_SECONDS,
    MANIFEST_NAME,
    STALE_AFTER_SECONDS,
    as_upath,
    collect_stale_temporaries,
    first_changed_file,
    hash_parts,
    is_local,
    read_json,
    read_manifest,
    read_valid_manifest,
    redact_url,
    remove_tree,
    sha256_bytes,
    sha256_file,
    stable_json,
    staged_directory,
    store_root,
    write_json,
    write_manifest,
    zarr_store,
)

__all__ = [
    "ArtifactStoreLike",
    "build_cached",
    "cache_key_of",
    "HEARTBEAT_NAME",
    "HEARTBEAT_SECONDS",
    "MANIFEST_NAME",
    "MAX_KEY_LENGTH",
    "FingerprintCache",
    "STALE_AFTER_SECONDS",
    "as_upath",
    "collect_stale_temporaries",
    "first_changed_file",
    "folder_content_fingerprint",
    "folder_listing",
    "hash_parts",
    "is_local",
    "is_safe_key",
    "partition_key",
    "read_json",
    "read_manifest",
    "read_valid_manifest",
    "redact_url",
    "remove_tree",
    "sha256_bytes",
    "sha256_file",
    "stable_json",
    "staged_directory",
    "store_root",
    "write_json",
    "write_manifest",
    "zarr_store",
]
