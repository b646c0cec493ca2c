"""Test harness: the real gateway binary as a subprocess on OS-chosen loopback ports, admin
HTTP helpers, and a TCP proxy whose connections a test can cut."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, Optional, Set, Tuple

REPO = Path(__file__).resolve().parents[3]


def gateway_bin() -> Path:
    p = Path(os.environ.get("FANLINE_BIN", REPO / "target" / "release" / "fanline"))
    if not p.is_file():
        raise RuntimeError(f"gateway binary {p} missing: run `cargo build --release` (or set FANLINE_BIN)")
    return p


class Gateway:
    """``fanline`` started with ``--listen 127.0.0.1:0 --admin-listen 127.0.0.1:0`` (or given
    ports); the bound addresses are read from its JSON startup log."""

    def __init__(self, log_dir: Path, env: Optional[Dict[str, str]] = None,
                 listen: str = "127.0.0.1:0", admin: str = "127.0.0.1:0") -> None:
        self.log_path = log_dir / f"fanline-{time.monotonic_ns()}.log"
        e = dict(os.environ)
        e.update({"FANLINE_SERVER_DRAIN_MS": "200", "FANLINE_SERVER_SHARDS": "2", "NO_COLOR": "1"})
        e.update(env or {})
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(gateway_bin()), "--listen", listen, "--admin-listen", admin, "--log-format", "json"],
            stdout=self.log, stderr=subprocess.STDOUT, env=e,
        )
        self.listen, self.admin = self._addresses(timeout=30.0)
        self.wait_ready(timeout=30.0)

    @property
    def ws_url(self) -> str:
        return f"ws://{self.listen}/v1/ws"

    def _addresses(self, timeout: float) -> Tuple[str, str]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            for line in self.log_path.read_text(errors="replace").splitlines():
                if '"fanline started"' in line:
                    f = json.loads(line)["fields"]
                    return f["listen"], f["admin"]
            time.sleep(0.02)
        raise RuntimeError("gateway did not log its addresses in time")

    def wait_ready(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if http("GET", self.admin, "/health/ready")[0] == 200:
                return
            time.sleep(0.05)
        raise RuntimeError("gateway not ready in time")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def http(method: str, addr: str, path: str, body: Any = None, timeout: float = 10.0) -> Tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://{addr}{path}", data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    except OSError:
        return 0, None
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def publish(admin: str, channel: str, data: Any, key: str) -> Tuple[str, int, int]:
    """Admin ``POST /v1/publish``; returns (topic, partition, offset) from the 202."""
    status, body = http("POST", admin, "/v1/publish", {"channel": channel, "key": key, "data": data, "event_type": "t"})
    assert status == 202, (status, body)
    return body["topic"], body["partition"], body["offset"]


class Proxy:
    """Forwards 127.0.0.1:<port> to ``target``; :meth:`cut` aborts every live connection (both
    sides see a reset), which is what a client sees when its TCP connection dies."""

    def __init__(self, target: str) -> None:
        self.host, port = target.rsplit(":", 1)
        self.tport = int(port)
        self.server: Optional[asyncio.AbstractServer] = None
        self.live: Set[asyncio.Transport] = set()
        self.accepted = 0

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"127.0.0.1:{port}"

    async def _conn(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            ur, uw = await asyncio.open_connection(self.host, self.tport)
        except OSError:
            w.transport.abort()
            return
        pair = [w.transport, uw.transport]
        self.live.update(pair)  # type: ignore[arg-type]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while True:
                    b = await src.read(65536)
                    if not b:
                        break
                    dst.write(b)
                    await dst.drain()
            except (OSError, ConnectionError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pump(r, uw), pump(ur, w))
        for t in pair:
            self.live.discard(t)  # type: ignore[arg-type]

    def cut(self) -> int:
        n = len(self.live) // 2
        for t in list(self.live):
            t.abort()
        self.live.clear()
        return n

    async def close(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

