"""Provenance of a report: git state, the local modules the notebook imported, packages.

``git_info(notebook, module_files)`` finds the repository holding the notebook (if any) and
records the commit, the branch, whether the work tree is dirty, and a diff of the notebook
and of every imported module that lives in the repository (tracked files: ``git diff HEAD``;
untracked ones: their whole content as a new-file diff).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def _git(root: Path, *args: str, check: bool = True) -> str:
    out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
    if check and out.returncode != 0:
        raise RuntimeError(out.stderr.strip())
    return out.stdout


def repo_root(path: Path) -> Path | None:
    try:
        top = _git(path if path.is_dir() else path.parent, "rev-parse", "--show-toplevel").strip()
    except (RuntimeError, OSError, subprocess.SubprocessError):
        return None
    return Path(top).resolve() if top else None


def local_modules(root: Path, module_files: Iterable[str]) -> list[str]:
    """Imported module files inside ``root`` (repo-relative), excluding virtualenvs."""
    out = set()
    for f in module_files:
        try:
            p = Path(f).resolve()
            rel = p.relative_to(root)
        except (ValueError, OSError):
            continue
        parts = rel.parts
        if any(x.startswith(".venv") or x in ("site-packages", "venv", "node_modules") for x in parts):
            continue
        if p.suffix == ".py" and p.is_file():
            out.add(rel.as_posix())
    return sorted(out)


def git_info(notebook: Path, module_files: Iterable[str] = ()) -> dict[str, Any] | None:
    """Git commit and dirty diff of the notebook's repository, or None outside a repository."""
    root = repo_root(notebook.resolve())
    if root is None:
        return None
    try:
        commit = _git(root, "rev-parse", "HEAD").strip()
    except RuntimeError:
        commit = None  # a repository with no commit yet
    branch = _git(root, "rev-parse", "--abbrev-ref", "HEAD", check=False).strip() or None
    status = _git(root, "status", "--porcelain", "--untracked-files=all", check=False)
    nb_rel = notebook.resolve().relative_to(root).as_posix()
    modules = local_modules(root, module_files)
    paths = [nb_rel, *modules]
    tracked = set(_git(root, "ls-files", "--", *paths, check=False).splitlines())
    diff = _git(root, "diff", "HEAD", "--", *sorted(tracked), check=False) if tracked and commit else ""
    for rel in paths:
        if rel not in tracked:
            new = subprocess.run(
                ["git", "-C", str(root), "diff", "--no-index", "--", os.devnull, rel],
                capture_output=True,
                text=True,
                timeout=30,
            )
            diff += new.stdout
    changed = sorted({line[3:] for line in status.splitlines() if len(line) > 3})
    return {
        "root": str(root),
        "commit": commit,
        "branch": branch,
        "dirty": bool(status.strip()),
        "changed_files": changed,
        "notebook": nb_rel,
        "local_modules": modules,
        "local_modules_changed": sorted(m for m in modules if m in changed),
        "diff": diff,
    }


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
