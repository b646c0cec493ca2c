"""A subscription: an async iterator of events of one channel, with its resume cursor."""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Dict, Mapping, Optional, Union

from ._cursor import Cursor
from ._types import Event, Gap, Reset, SubscriptionError

if TYPE_CHECKING:
    from ._client import Client

log = logging.getLogger("fanline")

GapHandler = Callable[[Gap], Union[None, Awaitable[None]]]
ResetHandler = Callable[[Reset], Union[None, Awaitable[None]]]


class _End:
    pass


_END = _End()


async def call_handler(handler: Optional[Callable[[Any], Any]], value: object) -> None:
    """Runs an application callback (sync or async); its exceptions are logged, never raised
    into the connection loop."""
    if handler is None:
        return
    try:
        r = handler(value)
        if inspect.isawaitable(r):
            await r
    except Exception:  # noqa: BLE001 - application code must not break the connection
        log.exception("fanline: %r handler raised", handler)


class Subscription:
    """Iterate with ``async for``; ``async with`` (or :meth:`close`) unsubscribes.

    Events are queued up to ``max_queue``; while the queue is full the client stops reading the
    socket, so a slow consumer is handled by the server (``gap`` frames), not by client memory.
    """

    def __init__(
        self,
        client: "Client",
        channel: str,
        filter: Optional[Mapping[str, Any]],
        on_gap: Optional[GapHandler],
        on_reset: Optional[ResetHandler],
        since: Optional[Mapping[str, object]],
        max_queue: int,
    ) -> None:
        self.channel = channel
        self.filter = dict(filter) if filter else None
        self.on_gap = on_gap
        self.on_reset = on_reset
        self.cursor = Cursor(since)
        self.acked = False
        self._was_acked = False
        self.delivered = 0
        self.dropped = 0
        self.resets = 0
        self._client = client
        self._queue: "asyncio.Queue[Union[Event, _End, SubscriptionError]]" = asyncio.Queue(
            max_queue
        )
        self._ended = False
        # The connection generation this subscription was last sent on.
        self._gen = -1

    @property
    def since(self) -> Dict[str, object]:
        """The resume position (persist it; pass it back as ``subscribe(..., since=...)``)."""
        return self.cursor.snapshot()

    def __aiter__(self) -> "Subscription":
        return self

    async def __anext__(self) -> Event:
        if self._ended and self._queue.empty():
            raise StopAsyncIteration
        item = await self._queue.get()
        if isinstance(item, _End):
            self._ended = True
            raise StopAsyncIteration
        if isinstance(item, SubscriptionError):
            self._ended = True
            raise item
        return item

    async def __aenter__(self) -> "Subscription":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Unsubscribes; iteration ends after the events already queued."""
        await self._client._unsubscribe(self)

    # Called by the client.
    async def _deliver(self, ev: Event) -> None:
        self.delivered += 1
        await self._queue.put(ev)

    def _end(self, item: Union[_End, SubscriptionError] = _END) -> None:
        if self._ended:
            return
        # Never blocks: drop queued events if the application stopped reading.
        while self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(item)
        self._ended = True
