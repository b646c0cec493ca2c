"""The connection loop: connect, welcome, (re)subscribe with ``since``, read, reconnect."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, Mapping, Optional, Union

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from ._backoff import Backoff, parse_retry_after
from ._cursor import parse_event_id
from ._subscription import GapHandler, ResetHandler, Subscription, call_handler
from ._types import Event, Gap, MalformedFrame, Reset, State, SubscriptionError

log = logging.getLogger("fanline")

TokenProvider = Callable[[], Union[str, None, Awaitable[Optional[str]]]]
StateHandler = Callable[[State], Any]

# websockets >= 15 reads proxy settings from the environment unless told not to.
_CONNECT_KW: Dict[str, Any] = (
    {"proxy": None} if "proxy" in inspect.signature(connect.__init__).parameters else {}
)


@dataclass
class _Outcome:
    """How one connection attempt ended; decides the next backoff."""

    healthy: bool = False  # a welcome was received and nothing malformed came
    overload: bool = False  # 429/503 on the handshake or close 1013: back off further
    retry_after: Optional[float] = None


class _Pacer:
    """Keeps client → server messages under the server's inbound rate (``welcome.limits``)."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = max(rate, 0.1)
        self.burst = max(burst, 1.0)
        self.tokens = self.burst
        self.at = asyncio.get_running_loop().time()

    async def take(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens >= 1:
                self.tokens -= 1
                return
            await asyncio.sleep((1 - self.tokens) / self.rate)


class Client:
    """A fanline WebSocket client that resumes by Kafka offset.

    ``token`` is a string, or a callable (sync or async) called before every connect attempt so
    that a refreshed token is used on reconnect; a provider that raises backs off like a failed
    connect. ``backoff`` shapes reconnect delays (exponential, full jitter).
    """

    def __init__(
        self,
        url: str,
        token: Union[str, TokenProvider, None] = None,
        *,
        backoff: Optional[Backoff] = None,
        on_state: Optional[StateHandler] = None,
        open_timeout: float = 10.0,
        compression: Optional[str] = "deflate",
        max_queue: int = 10_000,
        max_size: int = 16 * 2**20,
        headers: Optional[Mapping[str, str]] = None,
    ) -> None:
        self.url = url
        self.backoff = backoff or Backoff()
        self.on_state = on_state
        self.open_timeout = open_timeout
        self.compression = compression
        self.max_queue = max_queue
        self.max_size = max_size
        self.headers = dict(headers or {})
        self._token = token
        self._state = State.CLOSED
        self._subs: Dict[str, Subscription] = {}
        self._pending: Dict[str, Subscription] = {}
        self._req = 0
        self._gen = 0
        self._ws: Optional[ClientConnection] = None
        self._pacer: Optional[_Pacer] = None
        self._task: Optional["asyncio.Task[None]"] = None
        self._stop: Optional[asyncio.Event] = None
        self._last_rx = 0.0
        self._delivering = False
        self.connection_id: Optional[str] = None
        self.epoch: Optional[str] = None
        self.heartbeat_ms: Optional[int] = None
        self.connects = 0  # welcomes received
        self.failures = 0  # attempts that ended without a healthy connection
        self.malformed = 0  # malformed server frames seen
        self.last_close_code: Optional[int] = None

    # -- public API ------------------------------------------------------------------------
    @property
    def state(self) -> State:
        return self._state

    async def __aenter__(self) -> "Client":
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def start(self) -> None:
        """Starts the connection loop (``async with`` does this)."""
        if self._task is not None:
            return
        self._stop = asyncio.Event()
        self._set_state(State.CONNECTING)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="fanline-client")

    async def close(self) -> None:
        """Closes the connection (1000) and ends every subscription's iteration."""
        if self._stop is not None:
            self._stop.set()
        ws = self._ws
        if ws is not None:
            try:
                await asyncio.wait_for(ws.close(), 2.0)
            except Exception:  # noqa: BLE001 - closing is best effort
                ws.transport.abort()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(task, 5.0)
            except BaseException:  # noqa: BLE001 - includes the cancellation of a stuck loop
                task.cancel()
        for sub in list(self._subs.values()):
            sub._end()
        self._subs.clear()
        self._set_state(State.CLOSED)

    def subscribe(
        self,
        channel: str,
        filter: Optional[Mapping[str, Any]] = None,
        on_gap: Optional[GapHandler] = None,
        on_reset: Optional[ResetHandler] = None,
        *,
        since: Optional[Mapping[str, object]] = None,
    ) -> Subscription:
        """Subscribes to ``channel`` (now, and again with ``since`` after every reconnect).
        ``since`` resumes from a persisted :attr:`Subscription.since`."""
        if channel in self._subs:
            raise ValueError(f"already subscribed to {channel!r}")
        sub = Subscription(self, channel, filter, on_gap, on_reset, since, self.max_queue)
        self._subs[channel] = sub
        if self._ws is not None and self._state == State.OPEN:
            asyncio.get_running_loop().create_task(self._sync_subscriptions(self._ws))
        return sub

    async def wait_open(self, timeout: float = 30.0) -> bool:
        """Waits until connected with every subscription acknowledged; False on timeout."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while loop.time() < end:
            if self._state == State.OPEN and all(s.acked for s in self._subs.values()):
                return True
            await asyncio.sleep(0.01)
        return False

    async def ping(self) -> None:
        """Sends a protocol ``ping`` (the server answers ``pong``)."""
        ws = self._ws
        if ws is not None:
            await self._send(ws, {"type": "ping"})

    # -- internals --------------------------------------------------------------------------
    def _set_state(self, s: State) -> None:
        if s == self._state:
            return
        self._state = s
        if self.on_state is not None:
            try:
                self.on_state(s)
            except Exception:  # noqa: BLE001
                log.exception("fanline: on_state handler raised")

    async def _run(self) -> None:
        assert self._stop is not None
        attempt = 0
        while not self._stop.is_set():
            try:
                out = await self._connect_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the loop must survive anything
                log.exception("fanline: connection attempt failed unexpectedly")
                out = _Outcome()
            self._ws = None
            self.connection_id = None
            if self._stop.is_set():
                break
            if out.healthy and not out.overload:
                attempt = 0
            else:
                self.failures += 1
            delay = self.backoff.delay(attempt, out.retry_after)
            attempt += 1
            self._set_state(State.RECONNECTING)
            log.info("fanline: reconnecting in %.3f s (attempt %d)", delay, attempt)
            try:
                await asyncio.wait_for(self._stop.wait(), delay)
            except asyncio.TimeoutError:
                pass
        self._set_state(State.CLOSED)

    async def _token_value(self) -> Optional[str]:
        t = self._token
        if t is None or isinstance(t, str):
            return t
        r = t()
        if inspect.isawaitable(r):
            r = await asyncio.wait_for(r, self.open_timeout)
        if r is not None and not isinstance(r, str):
            raise TypeError(f"token provider returned {type(r).__name__}, not str")
        return r

    async def _connect_once(self) -> _Outcome:
        out = _Outcome()
        try:
            token = await self._token_value()
        except Exception as e:  # noqa: BLE001 - a failing provider backs off like a failed connect
            log.warning("fanline: token provider failed: %r", e)
            return out
        headers = dict(self.headers)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            ws = await connect(
                self.url,
                additional_headers=headers,
                open_timeout=self.open_timeout,
                ping_interval=None,  # the watchdog pings only when the link is idle
                ping_timeout=None,
                close_timeout=2.0,
                max_size=self.max_size,
                compression=self.compression,
                **_CONNECT_KW,
            )
        except InvalidStatus as e:
            status = e.response.status_code
            out.retry_after = parse_retry_after(e.response.headers.get("Retry-After"))
            out.overload = status in (429, 503)
            log.warning("fanline: handshake rejected: HTTP %d (retry after %s)", status, out.retry_after)
            return out
        except (OSError, asyncio.TimeoutError, WebSocketException) as e:
            log.info("fanline: connect failed: %r", e)
            return out
        self._ws = ws
        try:
            await self._session(ws, out)
        finally:
            if self._stop is not None and self._stop.is_set():
                try:
                    await asyncio.wait_for(ws.close(), 2.0)
                except Exception:  # noqa: BLE001
                    ws.transport.abort()
            else:
                ws.transport.abort()
            for sub in self._subs.values():
                sub.acked = False
            self._pending.clear()
        return out

    async def _session(self, ws: ClientConnection, out: _Outcome) -> None:
        loop = asyncio.get_running_loop()
        watchdog: Optional["asyncio.Task[None]"] = None
        try:
            try:
                first = await asyncio.wait_for(ws.recv(), self.open_timeout)
                self._welcome(first)
            except MalformedFrame as e:
                self.malformed += 1
                log.warning("fanline: malformed welcome, reconnecting: %s", e)
                return
            except asyncio.TimeoutError:
                log.warning("fanline: no welcome within %.1f s", self.open_timeout)
                return
            out.healthy = True
            self.connects += 1
            self._gen += 1
            self._last_rx = loop.time()
            self._set_state(State.OPEN)
            await self._sync_subscriptions(ws)
            if self.heartbeat_ms:
                watchdog = loop.create_task(self._watchdog(ws, self.heartbeat_ms / 1000.0))
            async for msg in ws:
                self._last_rx = loop.time()
                try:
                    await self._handle(msg)
                except MalformedFrame as e:
                    self.malformed += 1
                    out.healthy = False
                    log.warning("fanline: malformed frame, reconnecting: %s", e)
                    try:
                        await asyncio.wait_for(ws.close(1002, "malformed frame"), 2.0)
                    except Exception:  # noqa: BLE001
                        pass
                    return
        except ConnectionClosed:
            pass  # an error close; a normal one just ends the iteration
        finally:
            if watchdog is not None:
                watchdog.cancel()
            # The close frame the server sent, however the session ended (None: none came).
            rcvd = getattr(ws.protocol, "close_rcvd", None)
            code = getattr(rcvd, "code", None)
            self.last_close_code = code if isinstance(code, int) else None
            out.overload = self.last_close_code == 1013
            log.info("fanline: connection closed (%s)", self.last_close_code or "no close frame")

    def _welcome(self, first: Union[str, bytes]) -> None:
        m = _json(first)
        if m.get("type") != "welcome" or not isinstance(m.get("connection_id"), str):
            raise MalformedFrame(f"expected welcome, got {str(first)[:200]!r}")
        self.connection_id = m["connection_id"]
        epoch = m.get("epoch")
        self.epoch = epoch if isinstance(epoch, str) else None
        hb = m.get("heartbeat_ms")
        self.heartbeat_ms = hb if isinstance(hb, int) and not isinstance(hb, bool) and hb > 0 else None
        lim = m.get("limits")
        limits: Dict[str, Any] = lim if isinstance(lim, dict) else {}
        rate = limits.get("inbound_msgs_per_s", 10)
        burst = limits.get("inbound_burst", 20)
        ok = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (rate, burst))
        # Half the burst: leave room for pings and the application's own messages.
        self._pacer = _Pacer(float(rate), float(burst) / 2) if ok else _Pacer(10.0, 10.0)

    async def _send(self, ws: ClientConnection, msg: Dict[str, Any]) -> None:
        if self._pacer is not None:
            await self._pacer.take()
        await ws.send(json.dumps(msg, separators=(",", ":")))

    async def _sync_subscriptions(self, ws: ClientConnection) -> None:
        """Sends ``subscribe`` (with ``since`` when the cursor has positions) for every
        subscription not yet sent on this connection."""
        gen = self._gen
        try:
            while self._ws is ws and self._gen == gen:
                sub = next((s for s in self._subs.values() if s._gen != gen), None)
                if sub is None:
                    return
                sub._gen = gen
                self._req += 1
                rid = f"s{self._req}"
                self._pending[rid] = sub
                msg: Dict[str, Any] = {"type": "subscribe", "id": rid, "channels": [sub.channel]}
                if sub.filter:
                    msg["filter"] = sub.filter
                since = sub.cursor.since()
                if since is None and sub._was_acked:
                    # Subscribed before but nothing received: an empty cursor still asks the
                    # server to prove nothing was missed (or answer recovered:false).
                    since = {} if sub.cursor.epoch is None else {"epoch": sub.cursor.epoch}
                if since is not None:
                    msg["since"] = since
                await self._send(ws, msg)
        except ConnectionClosed:
            return

    async def _unsubscribe(self, sub: Subscription) -> None:
        if self._subs.get(sub.channel) is not sub:
            sub._end()
            return
        del self._subs[sub.channel]
        ws = self._ws
        if ws is not None and sub._gen == self._gen:
            self._req += 1
            try:
                await self._send(ws, {"type": "unsubscribe", "id": f"u{self._req}", "channels": [sub.channel]})
            except ConnectionClosed:
                pass
        sub._end()

    async def _watchdog(self, ws: ClientConnection, hb: float) -> None:
        """Dead-peer detection: after ``hb`` of silence, a ping must be answered within hb/2."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                await asyncio.sleep(hb / 4)
                if self._delivering or loop.time() - self._last_rx < hb:
                    continue
                waiter = await ws.ping()
                try:
                    await asyncio.wait_for(waiter, hb / 2)
                except asyncio.TimeoutError:
                    log.warning("fanline: no answer to ping within %.1f s; reconnecting", hb / 2)
                    ws.transport.abort()
                    return
                self._last_rx = loop.time()
        except (ConnectionClosed, asyncio.CancelledError):
            return

    async def _handle(self, raw: Union[str, bytes]) -> None:
        m = _json(raw)
        t = m.get("type")
        if t == "event":
            ev = _event(m)
            sub = self._subs.get(ev.channel)
            if sub is None:
                return  # late event of a channel just unsubscribed
            if not sub.cursor.advance(ev.topic, ev.partition, ev.offset):
                log.debug("fanline: skipping duplicate %s", ev.id)
                return
            self._delivering = True
            try:
                await sub._deliver(ev)
            finally:
                self._delivering = False
        elif t == "subscribed":
            self._subscribed(m)
        elif t == "gap":
            ch, dropped = m.get("channel"), m.get("dropped")
            if not isinstance(ch, str) or not isinstance(dropped, int) or isinstance(dropped, bool) or dropped < 0:
                raise MalformedFrame(f"bad gap frame {m!r}"[:300])
            sub = self._subs.get(ch)
            if sub is not None:
                sub.dropped += dropped
                reason = m.get("reason")
                await call_handler(sub.on_gap, Gap(ch, dropped, reason if isinstance(reason, str) else None))
        elif t == "error":
            rid = m.get("id")
            sub = self._pending.pop(rid, None) if isinstance(rid, str) else None
            code, msg = str(m.get("code")), str(m.get("message"))
            if sub is not None and self._subs.get(sub.channel) is sub:
                del self._subs[sub.channel]
                sub._end(SubscriptionError(sub.channel, code, msg))
            else:
                log.warning("fanline: server error %s: %s", code, msg)
        elif t == "status":
            log.info("fanline: server status %s", {k: v for k, v in m.items() if k != "type"})
        elif t in ("pong", "unsubscribed"):
            pass
        elif not isinstance(t, str):
            raise MalformedFrame(f"frame without a type: {str(raw)[:200]!r}")
        else:
            log.debug("fanline: ignoring unknown frame type %r", t)

    def _subscribed(self, m: Dict[str, Any]) -> None:
        rid = m.get("id")
        sub = self._pending.pop(rid, None) if isinstance(rid, str) else None
        if sub is None:
            chans = m.get("channels")
            if isinstance(chans, list) and len(chans) == 1 and isinstance(chans[0], str):
                sub = self._subs.get(chans[0])
        if sub is None or self._subs.get(sub.channel) is not sub:
            return
        sub.acked = True
        sub._was_acked = True
        if m.get("recovered") is False:
            reason = m.get("reason")
            sent = sub.cursor.since() or {}
            sub.cursor.reset(self.epoch)
            sub.resets += 1
            detail = m.get("detail")
            info = Reset(sub.channel, reason if isinstance(reason, str) else None, sent,
                         detail if isinstance(detail, str) else None)
            asyncio.get_running_loop().create_task(call_handler(sub.on_reset, info))
        elif self.epoch is not None:
            sub.cursor.epoch = self.epoch


def _json(raw: Union[str, bytes]) -> Dict[str, Any]:
    if not isinstance(raw, str):
        raise MalformedFrame(f"binary frame ({len(raw)} bytes)")
    try:
        m = json.loads(raw)
    except ValueError as e:
        raise MalformedFrame(f"not JSON ({e}): {raw[:200]!r}") from None
    if not isinstance(m, dict):
        raise MalformedFrame(f"not a JSON object: {raw[:200]!r}")
    return m


def _event(m: Dict[str, Any]) -> Event:
    ch = m.get("channel")
    parsed = parse_event_id(m.get("id"))
    if not isinstance(ch, str) or parsed is None:
        raise MalformedFrame(f"bad event frame {str(m)[:200]!r}")
    topic, partition, offset = parsed
    ts = m.get("ts")
    et = m.get("event_type")
    cid = m.get("correlation_id")
    return Event(
        channel=ch,
        id=m["id"],
        topic=topic,
        partition=partition,
        offset=offset,
        ts=ts if isinstance(ts, int) and not isinstance(ts, bool) else None,
        event_type=et if isinstance(et, str) else None,
        correlation_id=cid if isinstance(cid, str) else None,
        data=m.get("data"),
        raw=m,
    )


__all__ = ["Client"]
