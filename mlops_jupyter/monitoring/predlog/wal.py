"""The write-ahead log: buffered predictions made durable before their answer is sent.

The buffer (:mod:`.buffer`) holds records in memory for about a second before a flush
turns them into Parquet parts; a process killed with SIGKILL in between would lose them.
With ``wal=True`` (the gateway's workers) every record is also appended, as it is
buffered, to a per-process append-only *segment* file, so a prediction whose answer was
sent is on disk (in the page cache: it survives the process, not a power cut)::

    {home}/predictions/.wal/{pid}-{ms}-{seq}.wal          a segment (records)
    {home}/predictions/.wal/{pid}-{ms}-{seq}.wal.commit   its commit marker (during a flush)

Record framing: ``<u32 length><u32 crc32(payload)><payload>``, the payload a pickle of
``(kind, record)`` (``"q"``: a request tuple, ``"r"``: a row tuple, the layouts of
:mod:`.encoding`; ``"Q"``: a request tuple with its arrays as raw bytes, see
:func:`encode_record`). Pickle because the records hold NumPy arrays and DataFrames and must be
written in microseconds; the folder is the home's own, from which the gateway already
loads pickled models, so this widens no trust boundary. A reader stops at the first
record whose length runs past the end of the file or whose checksum differs: the torn
tail a SIGKILL leaves in the middle of a ``write`` is dropped, the records before it kept.

Ownership: the writing process holds an exclusive ``flock`` on each of its segments until
it is discarded; a segment whose lock can be taken belongs to a dead process (an
*orphan*). The locks die with the process, so no pid is trusted.

A flush (:meth:`.buffer.PredictionBuffer.flush`) *rotates*: under the buffer lock it
swaps the in-memory lists and opens a new segment for the appends that follow, so the old
segment holds exactly the records taken. It then commits the old segment:

1. each model's part is written under its temporary name (not yet visible);
2. the commit marker (the list of temporary -> final names) is written atomically;
3. the parts are renamed in;
4. the segment is truncated and removed, then the marker.

Records of a model whose part could not be written go back to the buffer and are
appended to the new segment before step 4. Replaying an orphan (:func:`replay_orphans`,
called when a worker starts and before every read) redoes step 3 when a marker exists
(renaming only what is still temporary: idempotent) and otherwise writes the segment's
records as parts with the same four steps; either way each record ends up in exactly one
part: no loss, no duplicate, whatever instant the writer died at.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import pickle
import struct
import sys
import time
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mlops_jupyter.config.processes import pid_alive

log = logging.getLogger(__name__)

WAL_DIR = ".wal"
SEGMENT_SUFFIX = ".wal"
COMMIT_SUFFIX = ".commit"
_HEADER = struct.Struct("<II")

Renames = list[tuple[str, str]]
"""(temporary path, final path) of the parts one commit publishes."""


def wal_dir(root: Path) -> Path:
    """The segments' folder under the prediction log's root."""
    return Path(root) / WAL_DIR


_FEATURES, _OUTPUT = 7, 9
"""Where a request record (:class:`~.encoding.Request` layout) holds its features and output."""
_PACKABLE = frozenset("biufUSb")


def _packable(a: Any) -> bool:
    np = sys.modules.get("numpy")  # an array exists only once NumPy is imported
    return np is not None and type(a) is np.ndarray and a.dtype.kind in _PACKABLE


def _pack(a: Any) -> tuple[str, tuple[int, ...], bytes]:
    return (a.dtype.str, a.shape, a.tobytes())


def _unpack(packed: tuple[str, tuple[int, ...], bytes]) -> Any:
    import numpy as np

    dtype, shape, raw = packed
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def encode_record(kind: str, rec: tuple[Any, ...]) -> bytes:
    """One framed record (see the module docstring).

    A request whose features and output are NumPy arrays of plain values (the gateway's
    every prediction) is written as kind ``"Q"`` with both arrays as ``(dtype, shape,
    bytes)``: a quarter of the cost of pickling the arrays themselves.
    """
    if kind == "q" and _packable(rec[_FEATURES]) and _packable(rec[_OUTPUT]):
        rec = (*rec[:_FEATURES], _pack(rec[_FEATURES]), rec[_FEATURES + 1], _pack(rec[_OUTPUT]), *rec[_OUTPUT + 1 :])
        kind = "Q"
    payload = pickle.dumps((kind, rec), protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def _decoded(kind: str, rec: tuple[Any, ...]) -> tuple[str, tuple[Any, ...]]:
    if kind != "Q":
        return kind, rec
    features, output = _unpack(rec[_FEATURES]), _unpack(rec[_OUTPUT])
    return "q", (*rec[:_FEATURES], features, rec[_FEATURES + 1], output, *rec[_OUTPUT + 1 :])


def decode_records(data: bytes) -> tuple[list[tuple[str, tuple[Any, ...]]], int]:
    """The records of a segment's bytes, and how many trailing bytes were torn (dropped).

    Example:
        >>> data = encode_record("r", (1.0, "acme")) + encode_record("r", (2.0, "acme"))
        >>> decode_records(data[:-3])
        ([('r', (1.0, 'acme'))], 41)
    """
    out = []
    pos, end = 0, len(data)
    while pos + _HEADER.size <= end:
        n, crc = _HEADER.unpack_from(data, pos)
        payload = data[pos + _HEADER.size : pos + _HEADER.size + n]
        if len(payload) < n or zlib.crc32(payload) != crc:
            break
        try:
            out.append(_decoded(*pickle.loads(payload)))
        except Exception:  # a checksum collision on garbage: treat as torn
            break
        pos += _HEADER.size + n
    return out, end - pos


class Segment:
    """One segment file, opened by its owner (locked) or by a replayer (lock taken)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self.fd = path, fd
        self.records = 0  # records appended by this process
        self.broken = False  # a write failed part-way: nothing more is appended to it

    @classmethod
    def create(cls, folder: Path, seq: int) -> Segment:
        """A new, locked segment of this process (raises OSError when the folder is not writable)."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{os.getpid()}-{int(time.time() * 1000):014d}-{seq:06d}{SEGMENT_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return cls(path, fd)

    @classmethod
    def claim(cls, path: Path) -> Segment | None:
        """An orphan segment, locked for replay; None when its owner lives or it is gone.

        When the pid in its name is dead, a lock held on it is another replayer's: wait for
        it (it is quick), so a reader never reads while rows it should see are half folded in.
        """
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            return None
        try:
            owner = int(path.name.split("-", 1)[0])
            fcntl.flock(fd, fcntl.LOCK_EX | (fcntl.LOCK_NB if pid_alive(owner) else 0))
            if os.fstat(fd).st_ino != os.stat(path).st_ino:
                raise FileNotFoundError(path)  # removed and replaced since we opened it
        except (OSError, ValueError):  # ValueError: not a segment name of ours
            os.close(fd)
            return None
        return cls(path, fd)

    def write(self, data: bytes, records: int = 1) -> None:
        """Append ``data`` (``records`` framed records) in one ``write`` when the kernel takes it."""
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        self.records += records

    def read(self) -> tuple[list[tuple[str, tuple[Any, ...]]], int]:
        with open(self.path, "rb") as f:
            return decode_records(f.read())

    def discard(self) -> None:
        """Empty and remove the segment, then release it. Truncating first makes a segment
        that cannot be unlinked (its folder became read-only) replay as nothing."""
        try:
            os.ftruncate(self.fd, 0)
        except OSError as exc:  # pragma: no cover - our own open fd
            log.warning("mlops_jupyter: could not truncate %s: %s", self.path, exc)
        _unlink(self.path)
        _unlink(self.marker)
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    @property
    def marker(self) -> Path:
        return self.path.with_name(self.path.name + COMMIT_SUFFIX)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("mlops_jupyter: could not remove %s: %s", path, exc)


def write_marker(seg: Segment, renames: Renames) -> None:
    """Step 2: record the renames to make, atomically (raises OSError if it cannot)."""
    tmp = seg.marker.with_name("." + seg.marker.name + ".tmp")
    tmp.write_text(json.dumps({"renames": renames}))
    os.replace(tmp, seg.marker)


def publish(renames: Iterable[tuple[str, str]]) -> None:
    """Step 3 (also its redo): rename in every part still under its temporary name."""
    for tmp, final in renames:
        try:
            os.replace(tmp, final)
        except FileNotFoundError:
            pass  # renamed before the crash


def commit(seg: Segment, renames: Renames) -> None:
    """Steps 2-4 for a segment whose parts are written (temporary names)."""
    if renames:
        write_marker(seg, renames)
        publish(renames)
    seg.discard()


def replay_orphans(root: Path, write_parts: Callable[[list[tuple[str, tuple[Any, ...]]]], Renames]) -> int:
    """Fold the segments of dead processes into the log; returns the records replayed.

    ``write_parts(records)`` writes the records' parts under temporary names and returns
    the renames (raising OSError when it cannot: the segment is left for a later replay).
    """
    folder = wal_dir(root)
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return 0
    replayed = 0
    for name in names:
        if not name.endswith(SEGMENT_SUFFIX):
            if name.endswith(COMMIT_SUFFIX) and name[: -len(COMMIT_SUFFIX)] not in names:
                _unlink(folder / name)  # its segment was removed after the renames: nothing left
            continue
        seg = Segment.claim(folder / name)
        if seg is None:
            continue
        try:
            if seg.marker.exists():
                publish(json.loads(seg.marker.read_text())["renames"])
                seg.discard()
                continue
            records, torn = seg.read()
            if torn:
                log.warning("mlops_jupyter: dropped a torn record (%d bytes) at the end of %s", torn, seg.path)
            renames = write_parts(records) if records else []
            commit(seg, renames)
            replayed += len(records)
            if records:
                log.info("mlops_jupyter: replayed %d prediction record(s) from %s", len(records), seg.path.name)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("mlops_jupyter: could not replay %s yet: %s", seg.path, exc)
        finally:
            seg.close()
    return replayed
