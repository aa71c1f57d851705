"""Compaction: merging a model's parts in tiers, and the retention policy.

Under load a writer adds a part every second, and each part costs a reader a footer read
and a file open, so parts are merged. The rule, applied per model folder, in **tiers** so a
model that serves for a year keeps few files and each row is rewritten only a few times:

* a part's *tier* is 0 when it holds fewer than ``small_rows`` (:data:`COMPACT_SMALL_ROWS`,
  100 000) rows, 1 below ``target_rows`` (:data:`COMPACT_TARGET_ROWS`, 1 000 000), 2 below
  ``target_rows * FANOUT`` (10 000 000), and so on;
* in each tier, once at least ``min_files`` (:data:`COMPACT_MIN_FILES`, 8) of its parts are
  there, they are cut, in name (flush) order, into batches of up to the next tier's size;
  each batch of two or more becomes one merged part, sorted by time, named with the newest
  ``flush_ms`` of its sources. Tier 0 is merged into up-to-1 000 000-row parts as before;
  ten of those become one 10 000 000-row part, and so on: a row is rewritten about once
  per tier (log-many times), and the number of parts stays logarithmic in the rows.

**Retention** (applied by the same pass, settings in :mod:`mlops_jupyter.monitoring.limits`):
rows older than ``$MLOPS_PREDLOG_MAX_AGE_DAYS`` (400 days) and, per model, all but the newest
``$MLOPS_PREDLOG_MAX_ROWS`` (20 000 000) rows are dropped: a part wholly past the limit is
deleted; the one part straddling it is rewritten without its dropped rows once at least a
quarter of it is past the limit (so a big part is not rewritten on every pass; until then
up to a quarter of one part's rows may outlive the limit).

The gateway compacts the models that got traffic in its background pass; a reader that
finds more than :data:`COMPACT_ON_READ` parts compacts before reading.

The locking (see :mod:`.parts` for the whole protocol): the compactor holds the exclusive
``.compact.lock`` without waiting (when another process is compacting the model this
returns at once), writes each merged part under a temporary name, then, under the
exclusive ``.read.lock``, writes the swap intent (:data:`~.parts.SWAP_INTENT`), renames the
merged part in, deletes its sources and the intent. A process killed before the rename
leaves a ``.tmp`` file that nobody lists; one killed after it leaves the intent, so readers
skip the already-merged sources and the next pass deletes them: no row is seen twice.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mlops_jupyter.monitoring.predlog.encoding import sort_by_time, unify_tables
from mlops_jupyter.monitoring.predlog.parts import (
    COMPACT_LOCK,
    PART_GLOB,
    READ_LOCK,
    SWAP_INTENT,
    flock,
    flush_ms_of,
    meta,
    part_files,
    part_name,
    swapped_sources,
    write_parquet,
)

COMPACT_SMALL_ROWS = 100_000
COMPACT_MIN_FILES = 8
COMPACT_TARGET_ROWS = 1_000_000
COMPACT_ON_READ = 64
FANOUT = 10
"""Each tier's parts hold up to this many times the rows of the tier below."""
MAX_TIERS = 6
RETENTION_REWRITE_SHARE = 0.25
"""A part straddling a retention limit is rewritten once this share of its rows is past it."""


def too_many_parts(folder: Path) -> bool:
    """Whether a reader should compact ``folder`` first (more than :data:`COMPACT_ON_READ` parts)."""
    return sum(1 for _ in folder.glob(PART_GLOB)) > COMPACT_ON_READ


def _tier(rows: int, small_rows: int, target_rows: int) -> int:
    if rows < small_rows:
        return 0
    cap, tier = target_rows, 1
    while rows >= cap and tier < MAX_TIERS:
        cap, tier = cap * FANOUT, tier + 1
    return tier


def _tier_cap(tier: int, target_rows: int) -> int:
    """The most rows a part merged from tier ``tier`` may hold."""
    return target_rows * FANOUT**tier


def finish_swap(folder: Path) -> None:
    """Complete a swap a killed compactor left half done (under the compact lock)."""
    for name in swapped_sources(folder):
        (folder / name).unlink(missing_ok=True)
    (folder / SWAP_INTENT).unlink(missing_ok=True)


def _swap(folder: Path, tmp: Path, name: str, sources: list[Path]) -> None:
    """Rename ``tmp`` in as ``name`` and delete ``sources``, readers excluded, crash-safe."""
    intent = folder / f".{SWAP_INTENT}.tmp"
    intent.write_text(json.dumps({"merged": name, "sources": [f.name for f in sources]}))
    with flock(folder / READ_LOCK, shared=False):
        os.replace(intent, folder / SWAP_INTENT)
        os.replace(tmp, folder / name)
        for f in sources:
            f.unlink(missing_ok=True)
        (folder / SWAP_INTENT).unlink(missing_ok=True)


def _merge(folder: Path, seq: Any, batch: list[Path]) -> int:
    import pyarrow.parquet as pq

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        parts = list(pool.map(pq.read_table, batch))  # pyarrow reads without the GIL
    table = sort_by_time(unify_tables(parts))
    del parts
    ms = max(flush_ms_of(f) or 0 for f in batch)
    name = part_name(ms, next(seq), merged=True)
    _swap(folder, write_parquet(table, folder, name, publish=False), name, batch)
    return table.num_rows


def apply_retention(folder: Path, seq: Any, now_us: int, max_age_s: float | None, max_rows: int | None) -> dict:
    """Drop what is past the retention limits (the rule of the module docstring).

    Returns:
        ``{"deleted_files": n, "dropped_rows": n}``.
    """
    out = {"deleted_files": 0, "dropped_rows": 0}
    files = [(f, meta(f)) for f in part_files(folder)]
    if not files:
        return out
    cutoff = now_us - int(max_age_s * 1e6) if max_age_s else None
    total = sum(m.rows for _, m in files)
    # oldest first by their newest row: whole parts go while they are past a limit
    files.sort(key=lambda fm: max((u.max_us for u in fm[1].units), default=0))
    for f, m in files:
        newest = max((u.max_us for u in m.units), default=0)
        by_age = cutoff is not None and newest < cutoff
        by_rows = max_rows is not None and total - m.rows >= max_rows
        if not (by_age or by_rows):
            break
        with flock(folder / READ_LOCK, shared=False):
            f.unlink(missing_ok=True)
        out["deleted_files"] += 1
        out["dropped_rows"] += m.rows
        total -= m.rows
    rest = [(f, m) for f, m in files if f.exists()]
    if not rest:
        return out
    f, m = rest[0]
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    excess = max(total - max_rows, 0) if max_rows is not None else 0
    old = sum(u.rows for u in m.units if cutoff is not None and u.max_us < cutoff)
    if max(excess, old) < RETENTION_REWRITE_SHARE * m.rows:
        return out
    table = sort_by_time(pq.read_table(f))
    keep = table.slice(min(excess, table.num_rows))
    if cutoff is not None:
        keep = keep.filter(pc.greater_equal(keep.column("timestamp").cast("int64"), cutoff))
    name = part_name(flush_ms_of(f) or 0, next(seq), merged=True)
    _swap(folder, write_parquet(keep, folder, name, publish=False), name, [f])
    out["dropped_rows"] += table.num_rows - keep.num_rows
    return out


def compact_folder(
    folder: Path,
    seq: Any,
    *,
    min_files: int,
    small_rows: int,
    target_rows: int,
    retention: tuple[int, float | None, int | None] | None = None,
) -> dict[str, int]:
    """Apply retention, then merge each tier of one model folder (see the module docstring).

    Args:
        folder: the model's folder (it exists).
        seq: this process' part counter (``next(seq)`` numbers the merged parts).
        min_files, small_rows, target_rows: the rule's thresholds.
        retention: ``(now in unix microseconds, max age in seconds or None, max rows or
            None)``; None applies none.

    Returns:
        ``{"merged_files": sources merged, "written_files": files written, "rows": rows
        rewritten, "deleted_files", "dropped_rows"}`` (zeros when there was nothing to do
        or the model was busy).
    """
    out = {"merged_files": 0, "written_files": 0, "rows": 0, "deleted_files": 0, "dropped_rows": 0}
    with flock(folder / COMPACT_LOCK, shared=False, blocking=False) as got:
        if not got:
            return out
        finish_swap(folder)
        if retention is not None:
            out.update(apply_retention(folder, seq, *retention))
        tiers: dict[int, list[tuple[Path, int]]] = {}
        for f in part_files(folder):
            n = meta(f).rows
            tiers.setdefault(_tier(n, small_rows, target_rows), []).append((f, n))
        for tier in sorted(tiers):
            files = tiers[tier]
            if len(files) < min_files:
                continue
            cap = _tier_cap(tier, target_rows)
            batches: list[list[Path]] = [[]]
            rows_in = 0
            for f, n in files:
                if batches[-1] and rows_in + n > cap:
                    batches.append([])
                    rows_in = 0
                batches[-1].append(f)
                rows_in += n
            for batch in batches:
                if len(batch) < 2:
                    continue
                out["rows"] += _merge(folder, seq, batch)
                out["merged_files"] += len(batch)
                out["written_files"] += 1
    return out
