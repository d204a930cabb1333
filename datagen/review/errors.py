"""Errors the review queue raises for requests it refuses."""
from __future__ import annotations


class QueueError(Exception):
    """A request the queue refuses. ``code`` is stable (the web app maps it to an HTTP status)."""

    status = 409

    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code
        self.detail = detail


class NotFound(QueueError):
    status = 404


class QueueMissing(QueueError):
    """The queue a command was pointed at does not exist (and that command does not create one)."""

    status = 404
