"""Errors whose message is meant for the person using the app or a command line.

Every user-facing error derives from ``UserError``, and nothing else does: the UI turns exactly
these into a plain message (``ui.common``), the CLIs into one ``error:`` line, and any other
exception stays what it is, a bug with a traceback. ``UserError`` is deliberately *not* a
``ValueError``, so that an ``except UserError`` never hides a real ``ValueError`` from a bug.
"""
from __future__ import annotations


class UserError(Exception):
    """Something the user can fix; the message says what was wrong and what to do."""


class InputError(UserError):
    """Bad text or numbers typed into the app: labels, templates, a query, a batch."""


class ImageError(UserError):
    """An input that is not a usable image (missing, not an image, damaged, too large)."""


class IndexProblem(UserError):
    """A search index that cannot be used as asked; the message says how to fix it."""


class CollectionMissing(IndexProblem):
    """An index whose collection folder is not where it was indexed (moved, renamed, unmounted)."""


class ModelUnavailable(UserError):
    """A model spec that names nothing, or a model that cannot be loaded here (e.g. offline)."""


class DeviceUnavailable(UserError):
    """A device asked for that this machine does not have (or a name that is not a device)."""


class IndexBusy(UserError):
    """Another process is writing the same index folder; the message names it (pid)."""


class ClusterProblem(UserError):
    """A Ray cluster that cannot be started or joined, or a Ray job that failed; what was committed is kept."""
