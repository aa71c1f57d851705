"""Compaction: merging a model's many small parts into few large time-sorted ones.

Under load a writer adds a part every second, and each part costs a reader a footer read
and a file open, so small parts are merged. The rule, applied per model folder:

* a part is *small* when it holds fewer than :data:`COMPACT_SMALL_ROWS` rows;
* nothing happens until there are at least :data:`COMPACT_MIN_FILES` small parts;
* the small parts, in name (flush) order, are cut into batches of up to
  :data:`COMPACT_TARGET_ROWS` rows; each batch of two or more becomes one merged part,
  sorted by time, named with the newest ``flush_ms`` of its sources.

The gateway compacts the models that got traffic in its background pass; a reader that
finds more than :data:`COMPACT_ON_READ` parts compacts before reading.

The locking (see :mod:`.parts` for the whole protocol): the compactor holds the exclusive
``.compact.lock`` without waiting (when another process is compacting the model this
returns at once), writes each merged part under a temporary name, then, under the
exclusive ``.read.lock``, renames it in and deletes its sources. A process killed between
the two leaves a ``.tmp`` file that nobody lists; one killed during the swap may leave a
source next to its merged part, the one case where a reader would see rows twice.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mlops_jupyter.monitoring.predlog.encoding import sort_by_time, unify_tables
from mlops_jupyter.monitoring.predlog.parts import (
    COMPACT_LOCK,
    PART_GLOB,
    READ_LOCK,
    flock,
    flush_ms_of,
    meta,
    part_files,
    part_name,
    write_parquet,
)

COMPACT_SMALL_ROWS = 100_000
COMPACT_MIN_FILES = 8
COMPACT_TARGET_ROWS = 1_000_000
COMPACT_ON_READ = 64


def too_many_parts(folder: Path) -> bool:
    """Whether a reader should compact ``folder`` first (more than :data:`COMPACT_ON_READ` parts)."""
    return sum(1 for _ in folder.glob(PART_GLOB)) > COMPACT_ON_READ


def compact_folder(folder: Path, seq: Any, *, min_files: int, small_rows: int, target_rows: int) -> dict[str, int]:
    """Merge the small parts of one model folder (the rule and locks of the module docstring).

    Args:
        folder: the model's folder (it exists).
        seq: this process' part counter (``next(seq)`` numbers the merged parts).
        min_files, small_rows, target_rows: the rule's thresholds.

    Returns:
        ``{"merged_files": sources merged, "written_files": files written, "rows": rows
        rewritten}`` (zeros when there was nothing to do or the model was busy).
    """
    out = {"merged_files": 0, "written_files": 0, "rows": 0}
    with flock(folder / COMPACT_LOCK, shared=False, blocking=False) as got:
        if not got:
            return out
        small = [(f, meta(f).rows) for f in part_files(folder)]
        small = [(f, n) for f, n in small if n < small_rows]
        if len(small) < min_files:
            return out
        batches: list[list[Path]] = [[]]
        rows_in = 0
        for f, n in small:
            if batches[-1] and rows_in + n > target_rows:
                batches.append([])
                rows_in = 0
            batches[-1].append(f)
            rows_in += n
        import pyarrow.parquet as pq

        for batch in batches:
            if len(batch) < 2:
                continue
            with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
                parts = list(pool.map(pq.read_table, batch))  # pyarrow reads without the GIL
            table = sort_by_time(unify_tables(parts))
            del parts
            ms = max(flush_ms_of(f) or 0 for f in batch)
            name = part_name(ms, next(seq), merged=True)
            tmp = write_parquet(table, folder, name, publish=False)
            with flock(folder / READ_LOCK, shared=False):
                os.replace(tmp, folder / name)
                for f in batch:
                    f.unlink(missing_ok=True)
            out["merged_files"] += len(batch)
            out["written_files"] += 1
            out["rows"] += table.num_rows
    return out
