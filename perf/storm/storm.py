#!/usr/bin/env python3
"""Reconnect storm: N clients of the Python library (clients/python) on one gateway, all cut at
once, reconnecting with exponential backoff + full jitter.

The gateway (target/release/fanline) runs as its own process on two free loopback ports. Once all
N clients are connected and subscribed, it is killed (SIGKILL: every socket dies at the same
instant; or SIGTERM: the 1001 drain spread over drain_ms), restarted on the SAME ports after
--downtime seconds, and the script records, until every client is back or --timeout passes:
  - connected clients over time (client view, sampled every 50 ms) and the gateway's own
    `connections` gauge (admin /v1/stats, sampled by the probe process);
  - /health/live latency on the public listener, probed every 50 ms by a SEPARATE process (so the
    clients' event loop does not distort it), before and during the storm;
  - after the storm, one event is published and the clients that receive it are counted
    (every client must be resubscribed, not just connected).
Bounded: N ≤ 9000 (fd limit 20,000 per process), every wait has a timeout, the gateway and the
probe are killed by pid at the end. Prints a Markdown section; --json writes raw samples.

  target/pyclient-venv/bin/python perf/storm/storm.py --clients 5000 --downtime 1.0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[2]
PROBE = r"""
import http.client, json, sys, time
pub, adm, period = sys.argv[1], sys.argv[2], float(sys.argv[3])
def get(addr, path):
    h, p = addr.rsplit(":", 1)
    t = time.time()
    try:
        c = http.client.HTTPConnection(h, int(p), timeout=2.0)
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        c.close()
        return t, time.time() - t, r.status, body
    except OSError:
        return t, time.time() - t, 0, b""
n = 0
while True:
    t, lat, st, _ = get(pub, "/health/live")
    out = {"t": t, "live_ms": lat * 1000, "live": st}
    if n % 2 == 0:
        _, _, s2, body = get(adm, "/v1/stats")
        if s2 == 200:
            out["gw_conns"] = json.loads(body)["connections"]
    print(json.dumps(out), flush=True)
    n += 1
    time.sleep(max(0.0, period - (time.time() - t)))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gateway:
    def __init__(self, binary: str, listen: str, admin: str, log: Path, env: Dict[str, str]):
        self.log = open(log, "ab")
        e = dict(os.environ)
        e.update(env)
        self.proc = subprocess.Popen(
            [binary, "--listen", listen, "--admin-listen", admin, "--log-format", "json"],
            stdout=self.log, stderr=subprocess.STDOUT, env=e,
        )
        self.admin = admin

    def wait_ready(self, timeout: float) -> float:
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://{self.admin}/health/ready", timeout=1) as r:
                    if r.status == 200:
                        return time.time()
            except OSError:
                pass
            time.sleep(0.01)
        raise RuntimeError("gateway not ready in time")

    def kill(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()


def publish(admin: str, channel: str) -> None:
    req = urllib.request.Request(
        f"http://{admin}/v1/publish", method="POST",
        data=json.dumps({"channel": channel, "data": {"at": time.time()}}).encode(),
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 202, r.status


WORKER = r"""
import asyncio, json, sys, time
sys.path.insert(0, sys.argv[1])
import fanline
n, url, initial, maximum, rate = int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
st = {"open": 0, "opens": 0, "rx": 0, "resets": 0}
def on_state():
    was = [False]
    def f(s):
        if s == fanline.State.OPEN and not was[0]:
            st["open"] += 1; st["opens"] += 1; was[0] = True
        elif s != fanline.State.OPEN and was[0]:
            st["open"] -= 1; was[0] = False
    return f
def reset(_):
    st["resets"] += 1
async def consume(sub):
    async for _ in sub:
        st["rx"] += 1
async def main():
    subs, tasks = [], []
    for i in range(n):
        c = fanline.Client(url, backoff=fanline.Backoff(initial, maximum), on_state=on_state(),
                           compression=None, open_timeout=10)
        c.start()
        sub = c.subscribe("storm", on_reset=reset)
        subs.append(sub)
        tasks.append(asyncio.ensure_future(consume(sub)))
        if i % 50 == 49:
            await asyncio.sleep(50 / rate)
    while True:
        acked = sum(1 for s in subs if s.acked)
        print(json.dumps({"t": time.time(), "acked": acked, **st}), flush=True)
        await asyncio.sleep(0.1)
asyncio.run(main())
"""


class Fleet:
    """N clients in W worker processes (one asyncio loop cannot absorb thousands of simultaneous
    reconnects without lagging its own clock); each prints its counters every 100 ms."""

    def __init__(self, n: int, workers: int, url: str, a: argparse.Namespace) -> None:
        self.n = n
        self.latest: Dict[int, dict] = {}
        self.lines: List[Tuple[int, dict]] = []
        self.procs: List[subprocess.Popen] = []
        src = str(REPO / "clients" / "python" / "src")
        for w in range(workers):
            k = n // workers + (1 if w < n % workers else 0)
            self.procs.append(subprocess.Popen(
                [sys.executable, "-c", WORKER, src, str(k), url, str(a.initial), str(a.max),
                 str(a.connect_rate / workers)], stdout=subprocess.PIPE, text=True))
        self.readers = [asyncio.ensure_future(self._read(i, p)) for i, p in enumerate(self.procs)]

    async def _read(self, i: int, p: subprocess.Popen) -> None:
        assert p.stdout is not None
        while True:
            line = await asyncio.to_thread(p.stdout.readline)
            if not line:
                return
            d = json.loads(line)
            self.latest[i] = d
            self.lines.append((i, d))

    def total(self, key: str) -> int:
        return sum(d[key] for d in self.latest.values())

    def all_back(self) -> bool:
        return len(self.latest) == len(self.procs) and self.total("open") == self.n and self.total("acked") == self.n

    async def wait(self, cond, timeout: float) -> bool:
        end = time.time() + timeout
        while time.time() < end:
            if cond():
                return True
            await asyncio.sleep(0.05)
        return cond()

    async def close(self) -> None:
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait(10)
        await asyncio.gather(*self.readers, return_exceptions=True)

    def curve(self, t0: float, bucket: float, until: float) -> List[Tuple[float, int, int]]:
        """(t, connected, cumulative opens) summed over workers, last line per bucket."""
        last: Dict[int, dict] = {}
        out = []
        it = iter(sorted(self.lines, key=lambda x: x[1]["t"]))
        nxt = next(it, None)
        t = t0
        while t <= until:
            while nxt is not None and nxt[1]["t"] <= t:
                last[nxt[0]] = nxt[1]
                nxt = next(it, None)
            out.append((t - t0, sum(d["open"] for d in last.values()), sum(d["opens"] for d in last.values())))
            t += bucket
        return out


def pct(xs: List[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


async def run(a: argparse.Namespace) -> int:
    if not 1 <= a.clients <= 9000:
        raise SystemExit("--clients must be in 1..9000 (fd limit 20,000 per process)")
    out_dir = REPO / "perf" / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    listen, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    env = {"FANLINE_SERVER_DRAIN_MS": str(a.drain_ms), "NO_COLOR": "1"}
    log = out_dir / f"storm-{stamp}-gateway.log"
    load_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    gw = Gateway(a.bin, listen, admin, log, env)
    gw.wait_ready(30)
    probe = subprocess.Popen([sys.executable, "-c", PROBE, listen, admin, "0.05"],
                             stdout=subprocess.PIPE, text=True)
    samples: List[dict] = []

    async def read_probe() -> None:
        assert probe.stdout is not None
        while True:
            line = await asyncio.to_thread(probe.stdout.readline)
            if not line:
                return
            samples.append(json.loads(line))

    probe_task = asyncio.ensure_future(read_probe())
    fleet = Fleet(a.clients, a.workers, f"ws://{listen}/v1/ws", a)
    gw2: Optional[Gateway] = None
    try:
        t0 = time.time()
        if not await fleet.wait(fleet.all_back, 120):
            raise SystemExit(f"only {fleet.total('open')}/{a.clients} connected in 120 s")
        ramp_s = time.time() - t0
        before_rx = -1
        if a.position:
            await asyncio.to_thread(publish, admin, "storm")  # every client now holds a position
            await fleet.wait(lambda: fleet.total("rx") == a.clients, 10)
            before_rx = fleet.total("rx")
        rx0, opens0 = fleet.total("rx"), fleet.total("opens")
        await asyncio.sleep(2.0)  # baseline probe samples
        t_cut = time.time()
        await asyncio.to_thread(gw.kill, signal.SIGKILL if a.cut == "kill" else signal.SIGTERM)
        t_down = time.time()
        await asyncio.sleep(max(0.0, t_cut + a.downtime - time.time()))
        t_start = time.time()
        gw2 = Gateway(a.bin, listen, admin, log, env)
        t_ready = await asyncio.to_thread(gw2.wait_ready, 30)
        complete = await fleet.wait(
            lambda: fleet.all_back() and fleet.total("opens") - opens0 == a.clients,
            max(0.0, a.timeout - (time.time() - t_cut)))
        t_all = time.time()
        await asyncio.sleep(1.0)
        await asyncio.to_thread(publish, gw2.admin, "storm")
        await fleet.wait(lambda: fleet.total("rx") - rx0 == a.clients, 10)
        await asyncio.sleep(0.3)
        after_rx = fleet.total("rx") - rx0
        resets = fleet.total("resets")
    finally:
        await fleet.close()
        probe.kill()
        probe.wait(5)
        await asyncio.wait_for(probe_task, 5)
        if gw2 is not None:
            gw2.kill(signal.SIGTERM)
        else:
            gw.kill(signal.SIGKILL)
    load_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()

    # Report.
    curve = fleet.curve(t_cut, a.bucket, t_all + 1.0)
    back_at: Dict[int, float] = {}  # k-th reconnect -> end of the bucket it happened in

    for t, _, opens in curve:
        for k in range(len(back_at) + 1, opens - opens0 + 1):
            back_at[k] = t

    def back_p(p: float) -> float:
        k = max(1, int(round(p / 100 * a.clients)))
        return back_at.get(k, float("nan"))

    gw_conns = {}
    for smp in samples:
        if "gw_conns" in smp and smp["t"] >= t_cut:
            gw_conns[int(round((smp["t"] - t_cut) / a.bucket))] = smp["gw_conns"]
    base = [s["live_ms"] for s in samples if s["t"] < t_cut and s["live"] == 200]
    storm = [s for s in samples if t_ready <= s["t"] <= t_all + 1.0]
    storm_ok = [s["live_ms"] for s in storm if s["live"] == 200]
    storm_fail = sum(1 for s in storm if s["live"] != 200)
    lines = [
        f"### Reconnect storm {stamp}",
        "",
        f"- command: `{' '.join(['perf/storm/storm.py'] + sys.argv[1:])}` (client: clients/python on "
        f"asyncio, {a.workers} worker processes; backoff full jitter, initial {a.initial} s doubling to {a.max} s)",
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(t_cut))}; git: "
        f"{subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True, cwd=REPO).stdout.strip()}",
        f"- load before: {load_before}",
        f"- load after: {load_after}",
        f"- machine: {os.cpu_count()} CPUs, gateway and clients on loopback; gateway default shards; "
        f"initial ramp of {a.clients} clients took {ramp_s:.1f} s",
        f"- cut: {'SIGKILL (every socket reset at once)' if a.cut == 'kill' else 'SIGTERM (1001 drain over ' + str(a.drain_ms) + ' ms)'}"
        f" at t=0, process gone at t={t_down - t_cut:.2f} s, restarted on the same ports at "
        f"t={t_start - t_cut:.2f} s, ready at t={t_ready - t_cut:.2f} s",
        f"- all {a.clients} reconnected and resubscribed: {'yes' if complete else 'NO'}, at t={t_all - t_cut:.2f} s; "
        f"clients back (bucket end, after the cut): 10% {back_p(10):.2f} s, 50% {back_p(50):.2f} s, "
        f"90% {back_p(90):.2f} s, 99% {back_p(99):.2f} s, 100% {back_p(100):.2f} s",
        f"- delivery: one event published after the storm reached {after_rx}/{a.clients} clients"
        + (f" (one published before the cut reached {before_rx}; `recovered:false` resets: {resets})"
           if a.position else ""),
        f"- /health/live (separate probe process, every 50 ms): before the cut p50 {pct(base, 50):.1f} ms, "
        f"p99 {pct(base, 99):.1f} ms (n={len(base)}); from ready until 1 s after the last reconnect "
        f"p50 {pct(storm_ok, 50):.1f} ms, p99 {pct(storm_ok, 99):.1f} ms, max {max(storm_ok) if storm_ok else float('nan'):.1f} ms "
        f"(n={len(storm_ok)}, failed {storm_fail})",
        "",
        "| t after cut (s) | clients connected | reconnected in bucket | gateway `connections` |",
        "|---|---|---|---|",
    ]
    prev, last_row, skipped = opens0, None, 0
    for t, conn, opens in curve:
        k = int(round(t / a.bucket))
        row = (conn, opens - prev, gw_conns.get(k, ""))
        prev = opens
        if row == last_row or (row[1] == 0 and last_row is not None and row[0] == last_row[0] and row[2] == ""):
            skipped += 1  # unchanged: collapsed
            continue
        if skipped:
            lines.append(f"| … | {last_row[0]} | 0 | (unchanged for {skipped} buckets) |")  # type: ignore[index]
            skipped = 0
        lines.append(f"| {t:.2f} | {row[0]} | {row[1]} | {row[2]} |")
        last_row = row
    text = "\n".join(lines) + "\n"
    print(text)
    if a.json:
        Path(a.json).write_text(json.dumps({"curve": curve, "t_cut": t_cut, "probe": samples, "workers": fleet.lines}))
    return 0 if complete and after_rx == a.clients else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=5000)
    p.add_argument("--bin", default=str(REPO / "target" / "release" / "fanline"))
    p.add_argument("--cut", choices=["kill", "term"], default="kill")
    p.add_argument("--downtime", type=float, default=1.0, help="seconds from the cut to the restart")
    p.add_argument("--drain-ms", type=int, default=2000)
    p.add_argument("--initial", type=float, default=0.5, help="backoff: first ceiling (s)")
    p.add_argument("--max", type=float, default=30.0, help="backoff: largest ceiling (s)")
    p.add_argument("--connect-rate", type=int, default=1000, help="initial ramp, clients/s")
    p.add_argument("--bucket", type=float, default=0.25)
    p.add_argument("--workers", type=int, default=4, help="client processes")
    p.add_argument("--timeout", type=float, default=90.0, help="max seconds after the cut")
    p.add_argument("--json", help="write raw samples here")
    p.add_argument("--position", action="store_true",
                   help="publish one event before the cut so every client resumes with `since`")
    a = p.parse_args()
    return asyncio.run(run(a))


if __name__ == "__main__":
    sys.exit(main())
