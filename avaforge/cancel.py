"""Cooperative cancel of the work item being handled, reaching into the threads that do its heavy work.

The queue (``avaforge.queue``) gives each item a token; code deep in a step (ffmpeg runs, a tracker's frame
loop) calls ``check()`` or ``requested()`` without any parameter threading through the stages. The token
lives in a context variable, and ``asyncio.to_thread`` copies the context, so a handler's threads see the
token of their item. Outside a queue worker (the embedded runner, the CLI) there is no token and nothing is
ever cancelled.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar


class Cancelled(Exception):
    """The item's job was cancelled: the queue acks the item and drops it (nothing further is queued)."""


_token: ContextVar[threading.Event | None] = ContextVar("avaforge_cancel_token", default=None)


@contextmanager
def scope(token: threading.Event) -> Iterator[threading.Event]:
    """Make ``token`` the current item's cancel token (for this task and the threads it starts)."""
    reset = _token.set(token)
    try:
        yield token
    finally:
        _token.reset(reset)


def requested() -> bool:
    token = _token.get()
    return token is not None and token.is_set()


def check(what: str = "") -> None:
    """Raise ``Cancelled`` when the current item's job was cancelled (between frames, batches, ...)."""
    if requested():
        raise Cancelled(f"job cancelled{': ' + what if what else ''}")
