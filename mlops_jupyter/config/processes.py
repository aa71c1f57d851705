"""Whether a process is alive, the one test behind every "is its owner gone?" question
(the gateway's workers, the write-ahead log's segments, the local target's gateway)."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """True for a running process that is not a zombie (a zombie holds no lock any more).

    >>> pid_alive(os.getpid()), pid_alive(0), pid_alive(-1)
    (True, False, False)
    """
    if pid <= 0:  # os.kill(0, ...) would signal our own process group
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc: kill(0) said it exists
