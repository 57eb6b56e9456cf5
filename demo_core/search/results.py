"""Search hits turned into what the app shows: a thumbnail per hit whose file is still there.

An index outlives its files: a collection folder can be moved, renamed or unmounted, and single
files deleted or damaged after indexing. None of this may look like "no results": a missing
collection folder is a ``CollectionMissing`` error naming the folder and the fix, and hits whose
files cannot be shown are left out with a note saying how many, which, and how to bring the
index up to date, while the others are still shown. Every such failure is logged.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..errors import CollectionMissing, ImageError, IndexProblem
from .builder import display_name, shown_name
from .index import Hit, ImageIndex
from .query import thumbnail

logger = logging.getLogger(__name__)

NAMED = 3  # missing files named in a note; the rest are counted


@dataclass
class Found:
    """One search result: a thumbnail of the file, its name, its cosine score and its index id."""

    thumbnail: Path
    name: str
    score: float
    id: int


class Results(list):
    """The results of one search (a list of ``Found``), and ``note``: why some hits are not among
    them, in words for the user ("" when every hit is shown)."""

    note: str = ""


def check_collection(idx: ImageIndex) -> Path:
    """The index's collection folder; CollectionMissing when it is not there."""
    root = idx.root
    if not root.is_dir():
        logger.error("index %s: its collection folder %s is missing", idx.folder, root)
        raise CollectionMissing(
            f"The images of the index {display_name(str(idx.folder))} were in {display_name(str(root))}, which is "
            "not there any more (moved, renamed, deleted or not mounted). Put the folder back there, or index it "
            "where it is now with `python index_builder NEW_PLACE` and start the app with the `--index` folder "
            "that prints.")
    return root


def shown(idx: ImageIndex, hits: list[Hit], thumbnail_folder: Path) -> Results:
    """A thumbnail for every hit whose file can still be read; the others are left out, logged and
    described in the note. Raises CollectionMissing when the whole collection folder is gone."""
    found, lost = Results(), []
    if not hits:
        return found
    root = check_collection(idx)
    for h in hits:
        try:
            found.append(Found(thumbnail(idx, h, thumbnail_folder), shown_name(Path(h.path).name), h.score, h.id))
        except FileNotFoundError:
            logger.warning("index %s: %s is no longer in %s", idx.folder, h.path, root)
            lost.append(h.path)
        except (IndexProblem, ImageError) as e:  # left the index since the search, or damaged since indexing
            logger.warning("index %s: %s cannot be shown: %s", idx.folder, h.path, e)
            lost.append(h.path)
        except OSError:  # permissions, a failing disk: not expected, so with its traceback
            logger.warning("index %s: %s cannot be read", idx.folder, h.path, exc_info=True)
            lost.append(h.path)
    if lost:
        names = ", ".join(display_name(p) for p in lost[:NAMED]) + (f" and {len(lost) - NAMED} more"
                                                                    if len(lost) > NAMED else "")
        found.note = (f"{len(lost)} of the {len(hits)} best matches could not be shown: their files in "
                      f"{display_name(str(root))} are missing or unreadable ({names}). To bring the index up to "
                      f"date, run `python index_builder {root} --out {idx.folder}`.")
    return found
