"""What killed runs left beside an output: found, reported, and removed where no running process can own it.

Every hidden file and folder hf_metaid writes beside a target ``NAME`` names its writer:
``.NAME.partial-HOST-PID-XXXXXXXX`` (a folder being written, or the writability probe) and
``.NAME.replaced-HOST-PID-XXXXXXXX`` (the previous folder, moved aside while the new one goes in). One whose process
is gone on this host is a killed run's: a ``partial`` one is removed, a ``replaced`` one too once ``NAME`` is in place
(its deletion was cut short), but kept while ``NAME`` is absent, as it is then the previous folder, whole. One of a
running process (a concurrent write of the same output), of another host (a shared file system), or of an earlier
version that did not name its writer is only reported: removing it could break a write in progress.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import warnings
from pathlib import Path

from ..errors import LeftoverWarning

_reported: set[str] = set()  # kept ones already reported (a command checks its output twice: before work, at save)


def owner_tag(pid: int | None = None) -> str:
    """``HOST-PID``, the writer named in the hidden files and folders beside a target (this process by default)."""
    return f"{_host()}-{os.getpid() if pid is None else pid}"


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "host"


def clear_leftovers(target: str | os.PathLike) -> int:
    """Remove the leftovers of killed runs beside ``target`` (module docstring); a :class:`LeftoverWarning` tells
    how many and the space that freed, and names each one kept and why (once per process). Returns the number
    removed."""
    target = Path(os.path.abspath(target))
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(partial|replaced)-(?:(.+)-(\d+)-)?[0-9a-f]{{8}}")
    try:
        found = sorted(p for p in target.parent.iterdir() if pattern.fullmatch(p.name))
    except OSError:  # a missing or unreadable parent: nothing to clear, and the write itself will tell
        return 0
    removed, freed = 0, 0
    for path in found:
        kind, host, pid = pattern.fullmatch(path.name).groups()
        if host != _host():
            why = f"written on host {host}" if host else "written by an earlier hf-metaid version"
            _report(
                target,
                path,
                f"left alone: {path.name} ({_mb(_size(path))}), {why}; delete it if no run writes {target}",
            )
        elif _is_running(int(pid)):
            _report(target, path, f"left alone: {path.name}, being written by the running process {pid}")
        elif kind == "replaced" and not target.exists():
            _report(
                target,
                path,
                f"absent, and its previous folder, moved aside by a killed run, is whole in {path.name}: rename it "
                f"back to keep it; it is removed once {target.name} is written again",
            )
        else:
            size = _size(path)
            _remove(path)
            if not os.path.lexists(path):
                removed, freed = removed + 1, freed + size
    if removed:
        message = f"{target}: removed {removed} leftover(s) of killed runs beside it ({_mb(freed)})"
        warnings.warn(message, LeftoverWarning, stacklevel=2)
    return removed


def _report(target: Path, path: Path, message: str) -> None:
    if str(path) not in _reported:
        _reported.add(str(path))
        warnings.warn(f"{target}: {message}", LeftoverWarning, stacklevel=3)


def _is_running(pid: int) -> bool:
    """Whether process ``pid`` exists on this host; where that cannot be told, it is taken to (nothing is removed)."""
    if os.name != "posix" or pid <= 0:  # elsewhere os.kill(pid, 0) would end the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but is another user's, or the question is refused
        return True
    return True


def _size(path: Path) -> int:
    """Bytes in the file or folder ``path`` (about what removing it frees); files that vanish meanwhile count 0."""
    paths = [Path(root, name) for root, _, names in os.walk(path) for name in names] if path.is_dir() else [path]
    size = 0
    for each in paths:
        with contextlib.suppress(OSError):
            size += each.lstat().st_size
    return size


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
