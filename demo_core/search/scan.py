"""What a build reads: the collection's image files, found without opening them, and each one read once,
safely (a FIFO named ``x.jpg`` would block a read forever; a file swapped for one after the scan is caught).

A name that is not UTF-8 (Latin-1 from an old camera card) is kept: os.walk hands it over with surrogates,
``index.stored`` keeps its bytes.
"""
from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import IndexProblem

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
MAX_FILE_BYTES = 256 * 2**20  # no photo is larger; a bigger "image" is not read into memory

@dataclass
class ScannedFile:
    rel: str  # '/'-separated path relative to the collection root
    path: Path
    size: int
    mtime: float


def display_name(rel: str) -> str:
    """A path as it can be printed: bytes that are not UTF-8 shown as \\xNN (as a shell's $'…' would)."""
    return os.fsencode(rel).decode("utf-8", "backslashreplace")


def shown_name(rel: str) -> str:
    """A file name as the app shows it: bytes that are not UTF-8 as the replacement character �."""
    return os.fsencode(rel).decode("utf-8", "replace")


def _not_regular(mode: int) -> str | None:
    """Why a file of this st_mode cannot be read as an image, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a folder" if stat.S_ISDIR(mode)
            else "not a regular file")
    return f"{kind}, not an image file"


def scan(root: Path, include_hidden: bool = False) -> tuple[list[ScannedFile], list[tuple[str, str]]]:
    """Image files under `root`, recursively. Directory symlinks are not followed (so no loops);
    a file symlink is kept only if it points inside the collection. Returns (files, skipped): what
    cannot be indexed (not a regular file, empty, too large) is skipped here with its reason, without being
    opened. A name that is not UTF-8 (Latin-1 from an old camera card or zip) is kept: ``index.stored``."""
    root = root.resolve()
    files, skipped = [], []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        if not include_hidden:
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        dirnames.sort()
        for name in sorted(filenames):
            if not include_hidden and name.startswith("."):
                continue
            if Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()  # a name that is not UTF-8 keeps its bytes as surrogates
            try:
                if path.is_symlink():
                    target = path.resolve()
                    if root not in target.parents:
                        skipped.append((rel, "symlink to a file outside the collection"))
                        continue
                st = path.stat()
            except OSError as e:
                skipped.append((rel, f"cannot read ({e.strerror or e})"))
                continue
            why = _not_regular(st.st_mode)
            if why is None and st.st_size == 0:
                why = "the file is empty"
            if why is None and st.st_size > MAX_FILE_BYTES:
                why = f"the file is {st.st_size / 2**20:,.0f} MB; files over {MAX_FILE_BYTES // 2**20} MB are not read"
            if why:
                skipped.append((rel, why))
                continue
            files.append(ScannedFile(rel, path, st.st_size, st.st_mtime))
    return files, skipped


def _read(f: ScannedFile):
    """Worker: read the bytes once and hash them. Returns (file, sha256, bytes) or (file, None, reason).

    Opened without blocking and checked again: the file may have been swapped for a FIFO since the scan."""
    try:
        fd = os.open(f.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            why = _not_regular(os.fstat(fh.fileno()).st_mode)
            if why:
                return f, None, why
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        return f, None, f"cannot read ({e.strerror or e})"
    if len(data) > MAX_FILE_BYTES:
        return f, None, f"the file is over {MAX_FILE_BYTES // 2**20} MB and was not read"
    sha = hashlib.sha256(data).hexdigest()
    return f, sha, data


def checked_root(root: str | Path) -> Path:
    """The collection folder, resolved. Raises IndexProblem when it is not a folder or its name is not UTF-8."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise IndexProblem(f"{root} is not a folder.")
    try:
        str(root).encode("utf-8")
    except UnicodeEncodeError:
        raise IndexProblem(f"The folder name {display_name(str(root))} is not valid UTF-8; rename it to index it.") from None
    return root
