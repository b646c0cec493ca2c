"""asyncio client for the fanline gateway (protocol v1): subscribe to channels, resume by Kafka
offset across reconnects, reconnect with exponential backoff and full jitter.

    async with fanline.Client("ws://host:8080/v1/ws", token=None) as client:
        async for ev in client.subscribe("issues", filter=None, on_gap=None, on_reset=None):
            ev.channel, ev.id, ev.event_type, ev.data
"""

from ._backoff import Backoff, parse_retry_after
from ._client import Client
from ._cursor import Cursor, parse_event_id
from ._subscription import Subscription
from ._types import Event, Gap, MalformedFrame, Reset, State, SubscriptionError

__all__ = [
    "Backoff",
    "Client",
    "Cursor",
    "Event",
    "Gap",
    "MalformedFrame",
    "Reset",
    "State",
    "Subscription",
    "SubscriptionError",
    "parse_event_id",
    "parse_retry_after",
]
__version__ = "0.1.0"
