"""A tiny local `websockets` server whose every frame a unit test scripts."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Awaitable, Callable, List, Optional

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

Handler = Callable[["FakeServer", ServerConnection, int], Awaitable[None]]


class FakeServer:
    def __init__(self, handler: Handler, reject: Optional[Callable[[int], Optional[tuple]]] = None):
        self.handler = handler
        self.reject = reject  # attempt -> (status, headers) to refuse the handshake
        self.attempts = 0
        self.connections = 0
        self.attempt_times: List[float] = []
        self.auth: List[Optional[str]] = []
        self.received: List[dict] = []
        self.server: Optional[Server] = None

    async def __aenter__(self) -> "FakeServer":
        self.server = await serve(self._handle, "127.0.0.1", 0, process_request=self._process,
                                  ping_interval=None, compression=None)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        assert self.server is not None
        port = list(self.server.sockets)[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/v1/ws"

    def _process(self, conn: ServerConnection, req: Request) -> Optional[Response]:
        self.attempts += 1
        self.attempt_times.append(asyncio.get_running_loop().time())
        self.auth.append(req.headers.get("Authorization"))
        if self.reject is not None:
            r = self.reject(self.attempts)
            if r is not None:
                status, headers = r
                resp = conn.respond(status, "no\n")
                for k, v in headers.items():
                    resp.headers[k] = v
                return resp
        return None

    async def _handle(self, conn: ServerConnection) -> None:
        self.connections += 1
        await self.handler(self, conn, self.connections)

    async def recv_json(self, conn: ServerConnection, timeout: float = 5.0) -> dict:
        m = json.loads(await asyncio.wait_for(conn.recv(), timeout))
        self.received.append(m)
        return m


def welcome(cid: str = "c1", heartbeat_ms: int = 20000, epoch: Optional[str] = None) -> str:
    w: dict[str, Any] = {"type": "welcome", "connection_id": cid, "protocol": 1,
                         "heartbeat_ms": heartbeat_ms,
                         "limits": {"inbound_msgs_per_s": 100, "inbound_burst": 200}}
    if epoch is not None:
        w["epoch"] = epoch
    return json.dumps(w)


def event(channel: str, eid: str, data: Any = None) -> str:
    return json.dumps({"type": "event", "channel": channel, "id": eid, "ts": 1, "event_type": "t", "data": data})


async def ack(server: FakeServer, conn: ServerConnection, **extra: Any) -> dict:
    """Reads a subscribe and answers `subscribed` (plus `extra`); returns the subscribe."""
    m = await server.recv_json(conn)
    assert m["type"] == "subscribe", m
    await conn.send(json.dumps({"type": "subscribed", "id": m["id"], "channels": m["channels"], **extra}))
    return m


async def hold(conn: ServerConnection, seconds: float = 30.0) -> None:
    try:
        await asyncio.wait_for(conn.wait_closed(), seconds)
    except asyncio.TimeoutError:
        pass
