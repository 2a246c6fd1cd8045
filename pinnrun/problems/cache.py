"""A disk cache for computed reference solutions, keyed by everything that determines them.

Files live in `$PINNRUN_CACHE`, else `$XDG_CACHE_HOME/pinnrun`, else `~/.cache/pinnrun`. Each file
stores its full key (canonical JSON) and a SHA-256 of its arrays; a file that cannot be read, was
written for another key (a hash collision or a hand-copied file) or fails its checksum is
recomputed and rewritten, never used. Writes go to a temporary file that is then renamed, so a
crash never leaves a half-written entry under the real name.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np

CACHE_ENV = "PINNRUN_CACHE"


def cache_dir() -> Path:
    """The cache directory ($PINNRUN_CACHE, $XDG_CACHE_HOME/pinnrun or ~/.cache/pinnrun)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pinnrun"


def canonical_key(key: Mapping[str, Any]) -> str:
    """The key as canonical JSON (sorted keys, repr-exact floats)."""
    return json.dumps(key, sort_keys=True, separators=(",", ":"))


def checksum(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over the arrays' names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def entry_path(name: str, key: Mapping[str, Any]) -> Path:
    """Where the entry for `key` lives: <cache_dir>/<name>-<first 16 hex of sha256(key)>.npz."""
    return cache_dir() / f"{name}-{hashlib.sha256(canonical_key(key).encode()).hexdigest()[:16]}.npz"


def load(path: Path, key: Mapping[str, Any]) -> Optional[dict[str, np.ndarray]]:
    """The arrays stored at `path` if the file is intact and was written for `key`, else None."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            contents = {name: stored[name] for name in stored.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    stored_key, stored_sum = contents.pop("__key__", None), contents.pop("__checksum__", None)
    if stored_key is None or stored_sum is None or str(stored_key) != canonical_key(key):
        return None
    return contents if str(stored_sum) == checksum(contents) else None


def save(path: Path, key: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    """Write the arrays with their key and checksum, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, __key__=np.array(canonical_key(key)), __checksum__=np.array(checksum(arrays)), **arrays)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def cached(name: str, key: Mapping[str, Any], compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays for `key`: from the cache when a valid entry exists, else computed and stored.

    An unwritable cache directory costs a warning and a recomputation next time, not the run.
    """
    path = entry_path(name, key)
    if path.exists():
        found = load(path, key)
        if found is not None:
            return found
        warnings.warn(f"reference cache entry {path} is corrupt or belongs to other settings; recomputing it")
    arrays = compute()
    try:
        save(path, key, arrays)
    except OSError as exc:
        warnings.warn(f"reference cache {path.parent} is not writable ({exc}); the {name} reference will be recomputed next time")
    return arrays
