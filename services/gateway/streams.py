"""Between the gateway's event loop and the (blocking) S3 SDK: an upload's chunks are handed to a thread that
streams them to S3 as they arrive, and a download's chunks are read in a thread one at a time; at most a few
chunks are in memory at once whatever the size of the artifact."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TypeVar

T = TypeVar("T")
_END = object()


class UploadAborted(Exception):
    """The request side gave up (bad chunk, limit crossed, client gone): the S3 upload is aborted."""


class ChunkFeed:
    """A bounded hand-over of byte chunks from the event loop to a consuming thread (``chunks()``)."""

    def __init__(self, depth: int = 4) -> None:
        self.items: queue.Queue[object] = queue.Queue(maxsize=depth)
        self.aborted = threading.Event()

    def chunks(self) -> Iterator[bytes]:
        """The consumer's side (runs in a thread); raises ``UploadAborted`` once ``abort`` was called."""
        while True:
            if self.aborted.is_set():
                raise UploadAborted("upload aborted")
            try:
                item = self.items.get(timeout=0.2)
            except queue.Empty:
                continue
            if item is _END:
                return
            yield item  # type: ignore[misc]

    async def put(self, data: bytes, consumer: asyncio.Future[object]) -> bool:
        """Hand one chunk over, waiting while the consumer is behind; False if the consumer has ended."""
        while not consumer.done():
            try:
                self.items.put_nowait(data)
                return True
            except queue.Full:
                await asyncio.sleep(0.005)
        return False

    async def end(self, consumer: asyncio.Future[object]) -> None:
        await self.put(_END, consumer)  # type: ignore[arg-type]

    def abort(self) -> None:
        self.aborted.set()


async def iterate_in_thread(make: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
    """Items of a blocking iterator, each ``next`` run in a thread so the event loop keeps serving."""
    it = await asyncio.to_thread(make)
    while True:
        item = await asyncio.to_thread(next, it, _END)
        if item is _END:
            return
        yield item  # type: ignore[misc]
