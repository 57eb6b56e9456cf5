"""One writer per index folder, across processes: an advisory lock on ``OUT/.lock``."""
from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from ..errors import IndexBusy

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one builder per folder is then up to the user
    fcntl = None

_held: dict[Path, tuple[int, int]] = {}  # index folder -> (owning thread, depth): writer_lock nests
_held_lock = threading.Lock()


@contextlib.contextmanager
def writer_lock(out: str | Path):
    """Hold the index folder `out` for writing: one writer at a time, across processes.

    An advisory lock (flock) on ``out/.lock``, which holds the owner's pid. The operating system
    releases it when the process ends, however it ends, so a killed build leaves no stale lock. The
    same thread may take it again (the CLI holds it while it loads the model, then builds).

    Raises:
        IndexBusy: another process, or another thread here, holds it.
    """
    out = Path(out).resolve()
    me = threading.get_ident()
    with _held_lock:
        owner, depth = _held.get(out, (None, 0))
        if owner is not None and owner != me:
            raise IndexBusy(f"another index_builder is writing {out} (pid {os.getpid()}); wait for it to finish.")
        if owner == me:
            _held[out] = (me, depth + 1)
    if owner == me:
        try:
            yield
        finally:
            with _held_lock:
                _held[out] = (me, _held[out][1] - 1)
        return
    out.mkdir(parents=True, exist_ok=True)
    fh = open(out / ".lock", "a+")
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                pid = fh.read().strip() or "unknown"
                raise IndexBusy(f"another index_builder is writing {out} (pid {pid}); wait for it to finish, "
                                "or use another --out.") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        with _held_lock:
            _held[out] = (me, 1)
        try:
            yield
        finally:
            with _held_lock:
                del _held[out]
    finally:
        fh.close()  # closing the file releases the flock
