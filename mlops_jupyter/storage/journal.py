"""Append-only write journal: what the background writer has not stored yet survives a kill.

Each process that logs owns a session token ``{pid}-{random}`` and holds an exclusive
``flock`` on ``{token}.lock`` for its lifetime. Every queued write is appended (one
length-prefixed ``marshal`` record, one ``write(2)``; marshal costs about 1 us where JSON
costs 7) to the current segment ``{token}.{seq}.journal`` before the call
returns; the writer rotates to a new segment when it takes a batch and deletes the old one
once the batch is committed. A later process that can take the lock of a token knows its
owner is gone and replays that token's segments (the sinks are idempotent).
"""

from __future__ import annotations

import fcntl
import marshal
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple


class Journal:
    """The current process's journal in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.token = f"{os.getpid()}-{uuid.uuid4().hex[:10]}"
        self._lock_fd = os.open(self.dir / f"{self.token}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._seq = 0
        self._fd: int | None = None
        self._path: Path | None = None
        self._open_segment()

    def _open_segment(self) -> None:
        self._path = self.dir / f"{self.token}.{self._seq:08d}.journal"
        self._fd = os.open(self._path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
        self._written = False

    def append(self, op: dict[str, Any]) -> None:
        """Append one op; the caller holds the writer's lock, so records never interleave."""
        data = marshal.dumps(op)
        os.write(self._fd, len(data).to_bytes(4, "big") + data)
        self._written = True

    def rotate(self) -> Path | None:
        """Start a new segment; return the previous one (None if nothing was written to it)."""
        if not self._written:
            return None
        old = self._path
        os.close(self._fd)
        self._seq += 1
        self._open_segment()
        return old

    @staticmethod
    def discard(path: Path | None) -> None:
        if path is not None:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def close(self, *, keep_data: bool) -> None:
        """Close; remove the lock and the empty segment unless unwritten data must be kept."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            if not self._written:
                self.discard(self._path)
        if not keep_data:
            try:
                os.unlink(self.dir / f"{self.token}.lock")
            except FileNotFoundError:
                pass
        os.close(self._lock_fd)


def read_segments(paths: list[Path]) -> Iterator[dict[str, Any]]:
    for p in paths:
        data = Path(p).read_bytes()
        pos = 0
        while pos + 4 <= len(data):
            n = int.from_bytes(data[pos : pos + 4], "big")
            if pos + 4 + n > len(data):
                break  # torn last record of a killed process: that call never returned
            yield marshal.loads(data[pos + 4 : pos + 4 + n])
            pos += 4 + n


class Orphan(NamedTuple):
    """The journal of a process that is gone, locked by the caller until :func:`release`."""

    token: str
    segments: list[Path]
    lock_fd: int


def orphans(directory: Path) -> Iterator[Orphan]:
    """Yield the journals in ``directory`` whose owner process is gone.

    The caller must release each one with :func:`release` after replaying it.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return
    for lock in sorted(directory.glob("*.lock")):
        token = lock.name[: -len(".lock")]
        fd = _lock_orphan(lock)
        if fd is not None:
            yield Orphan(token, sorted(directory.glob(f"{token}.*.journal")), fd)


def orphans_peek(directory: Path) -> Iterator[str]:
    """Yield the tokens of journals whose owner is gone, without keeping their locks (a
    cheap test before opening a sink to replay them with :func:`orphans`)."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    for lock in sorted(directory.glob("*.lock")):
        fd = _lock_orphan(lock)
        if fd is not None:
            os.close(fd)
            yield lock.name[: -len(".lock")]


def _lock_orphan(lock: Path) -> int | None:
    """The locked descriptor of a journal lock whose owner is gone; None while it lives
    (it holds the lock) or when the lock file has just been removed."""
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None  # owner alive
    return fd


def release(directory: Path, orphan: Orphan) -> None:
    """Delete a replayed orphan's segments and lock file, and close its lock."""
    for p in orphan.segments:
        Journal.discard(p)
    try:
        os.unlink(Path(directory) / f"{orphan.token}.lock")
    except FileNotFoundError:
        pass
    os.close(orphan.lock_fd)
