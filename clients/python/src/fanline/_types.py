"""Values the client hands to applications: events, gaps, resets, connection states."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Dict, Optional


class State(str, enum.Enum):
    """Connection state (the same names as the JS client's ``state`` event)."""

    CONNECTING = "connecting"
    OPEN = "open"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


@dataclass(frozen=True)
class Event:
    """One ``event`` frame. ``id`` is ``topic/partition/offset``."""

    channel: str
    id: str
    topic: str
    partition: int
    offset: int
    ts: Optional[int]
    event_type: Optional[str]
    correlation_id: Optional[str]
    data: Any
    raw: Dict[str, Any] = field(repr=False, compare=False, default_factory=dict)


@dataclass(frozen=True)
class Gap:
    """The server dropped ``dropped`` events of ``channel`` for this connection."""

    channel: str
    dropped: int
    reason: Optional[str]


@dataclass(frozen=True)
class Reset:
    """A resume could not be proven complete (``recovered:false``): reload state, e.g. from REST.

    ``reason`` is ``partial_cursor``, ``epoch_changed`` or ``too_old`` (``detail`` explains);
    ``since`` is the cursor that was sent; the subscription continues live from here and its
    cursor restarts from the events received next.
    """

    channel: str
    reason: Optional[str]
    since: Dict[str, Any]
    detail: Optional[str] = None


class SubscriptionError(Exception):
    """The server refused a subscription (an ``error`` frame answering it)."""

    def __init__(self, channel: str, code: str, message: str) -> None:
        super().__init__(f"{channel}: {code}: {message}")
        self.channel = channel
        self.code = code
        self.message = message


class MalformedFrame(Exception):
    """A server frame the client cannot use; the client logs it and reconnects."""
