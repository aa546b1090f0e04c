"""A worker's local cache of files: least recently used first out, safe to share.

Entries are directories under one root, each built once and then only read:

- a builder writes into a private temporary directory and renames it into place (a
  rename is atomic), so a reader never sees half an entry;
- every entry has a lock file: the builder holds it exclusively while it builds (a
  second worker wanting the same entry waits, then finds it built), a user holds it
  shared while it reads (memory maps included), and eviction takes it exclusively
  without waiting, so an entry in use is never removed;
- ``max_bytes`` bounds the total; after each build the least recently used entries
  (by the time they were last opened) are removed until the rest fit.

Several processes (two workers on one machine) may share one root. Nothing here imports
flask, sqlalchemy or celery.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

_USED = ".used"
_DONE = ".done"


class FileCache:
    """Entries (directories) under ``root``, at most ``max_bytes`` in all."""

    def __init__(self, root: str | Path, max_bytes: int):
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.root.mkdir(parents=True, exist_ok=True)

    def _lock_path(self, key: str) -> Path:
        return self.root / f"{key}.lock"

    @contextlib.contextmanager
    def entry(self, key: str, build: Callable[[Path], None]) -> Iterator[Path]:
        """The entry's directory, built by ``build(directory)`` if missing; held (shared
        lock) until the block ends.

        Parameters
        ----------
        key:
            A file-name-safe name (e.g. a hash of what the entry is made from).
        build:
            Fills an empty directory with the entry's files.
        """
        path = self.root / key
        with open(self._lock_path(key), "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_SH)
            if not (path / _DONE).exists():
                fcntl.flock(lock, fcntl.LOCK_UN)
                fcntl.flock(lock, fcntl.LOCK_EX)  # one builder at a time; others wait
                if not (path / _DONE).exists():
                    self._build(path, build)
                fcntl.flock(lock, fcntl.LOCK_SH)  # downgrade: readers may join
                self.evict(keep=key)
            (path / _USED).touch()
            yield path

    def _build(self, path: Path, build: Callable[[Path], None]) -> None:
        shutil.rmtree(path, ignore_errors=True)  # a build that died half-way
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=self.root))
        try:
            build(staging)
            (staging / _DONE).write_text(json.dumps({"built_at": time.time()}))
            os.rename(staging, path)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def evict(self, keep: str | None = None) -> list[str]:
        """Remove least recently used entries not in use until the rest fit; returns the
        keys removed."""
        entries = []
        for path in self.root.iterdir():
            if path.is_dir() and not path.name.startswith(".") and (path / _DONE).exists():
                used = (path / _USED).stat().st_mtime if (path / _USED).exists() else 0.0
                entries.append((used, path.name, _size(path)))
        total = sum(size for _, _, size in entries)
        removed = []
        for _, key, size in sorted(entries):
            if total <= self.max_bytes:
                break
            if key == keep:
                continue
            if self._remove_if_idle(key):
                total -= size
                removed.append(key)
        return removed

    def _remove_if_idle(self, key: str) -> bool:
        with open(self._lock_path(key), "a+b") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # someone reads it
            doomed = self.root / f".{key}.removing.{os.getpid()}"
            with contextlib.suppress(FileNotFoundError):
                os.rename(self.root / key, doomed)
            shutil.rmtree(doomed, ignore_errors=True)
            return True

    def keys(self) -> list[str]:
        """The complete entries present."""
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and (p / _DONE).exists())

    def size(self) -> int:
        """Bytes held by complete entries."""
        return sum(_size(self.root / key) for key in self.keys())


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file())
