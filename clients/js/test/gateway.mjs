// Test harness shared by the integration and browser tests: the real gateway binary on
// OS-chosen loopback ports (addresses read from its JSON startup log), admin HTTP helpers,
// and a TCP proxy whose connections a test can cut or refuse.
import { spawn } from "node:child_process";
import net from "node:net";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");

export function gatewayBin() {
  const p = process.env.FANLINE_BIN ? path.resolve(process.env.FANLINE_BIN) : path.join(REPO, "target/release/fanline");
  if (!fs.existsSync(p)) throw new Error(`gateway binary ${p} missing: run \`cargo build --release\` (or set FANLINE_BIN)`);
  return p;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` (may be async) every 10 ms, up to `ms`. */
export async function waitFor(cond, ms = 10_000, what = "condition") {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await sleep(10);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

export class Gateway {
  /** Starts `fanline --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0` with `env` added. */
  static async start(env = {}) {
    const g = new Gateway();
    const dir = path.join(REPO, "target", "jsclient-logs");
    fs.mkdirSync(dir, { recursive: true });
    g.logPath = path.join(dir, `fanline-${process.pid}-${Date.now()}.log`);
    const log = fs.openSync(g.logPath, "w");
    g.proc = spawn(gatewayBin(), ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--log-format", "json"], {
      env: { ...process.env, FANLINE_SERVER_DRAIN_MS: "200", FANLINE_SERVER_SHARDS: "2", NO_COLOR: "1", ...env },
      stdio: ["ignore", log, log],
    });
    fs.closeSync(log);
    g.exited = new Promise((r) => g.proc.once("exit", r));
    try {
      await waitFor(() => {
        if (g.proc.exitCode !== null) throw new Error(`gateway exited ${g.proc.exitCode}: ${g.logTail()}`);
        for (const line of fs.readFileSync(g.logPath, "utf8").split("\n")) {
          if (line.includes('"fanline started"')) {
            const f = JSON.parse(line).fields;
            g.listen = f.listen;
            g.admin = f.admin;
            return true;
          }
        }
        return false;
      }, 30_000, "the gateway's startup line");
      await waitFor(async () => (await g.http("GET", g.listen, "/health/ready")).status === 200, 30_000, "readiness");
    } catch (e) {
      await g.stop();
      throw e;
    }
    return g;
  }

  get wsUrl() {
    return `ws://${this.listen}/v1/ws`;
  }

  logTail() {
    try {
      return fs.readFileSync(this.logPath, "utf8").slice(-3000);
    } catch {
      return "";
    }
  }

  async http(method, addr, p, body, headers = {}) {
    try {
      const res = await fetch(`http://${addr}${p}`, {
        method,
        headers: body === undefined ? headers : { "content-type": "application/json", ...headers },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(10_000),
      });
      const text = await res.text();
      let json = null;
      try {
        json = text ? JSON.parse(text) : null;
      } catch {}
      return { status: res.status, headers: res.headers, text, json };
    } catch (e) {
      return { status: 0, text: String(e), json: null, headers: new Headers() };
    }
  }

  /** Admin `POST /v1/publish`; returns the 202 body (topic, partition, offset). */
  async publish(channel, data, key) {
    const r = await this.http("POST", this.admin, "/v1/publish", { channel, key, data, event_type: "test" });
    if (r.status !== 202) throw new Error(`publish: ${r.status} ${r.text}`);
    return r.json;
  }

  /** Admin `GET /v1/connections`. */
  async connections() {
    const r = await this.http("GET", this.admin, "/v1/connections");
    if (r.status !== 200) throw new Error(`connections: ${r.status} ${r.text}`);
    return Array.isArray(r.json) ? r.json : (r.json?.connections ?? []);
  }

  /** Admin `DELETE /v1/connections/{id}`: the status. */
  async cut(id) {
    return (await this.http("DELETE", this.admin, `/v1/connections/${encodeURIComponent(id)}`)).status;
  }

  async stop() {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill("SIGTERM");
      const t = setTimeout(() => this.proc.kill("SIGKILL"), 10_000);
      await this.exited;
      clearTimeout(t);
    }
  }
}

/** Forwards 127.0.0.1:<port> to `target`. `cut()` destroys every live connection; while
 * `refusing`, new connections are closed at once (the client sees a failed connect). */
export class Proxy {
  constructor(target) {
    const [host, port] = [target.slice(0, target.lastIndexOf(":")), Number(target.slice(target.lastIndexOf(":") + 1))];
    this.live = new Set();
    this.accepted = 0;
    this.refusing = false;
    this.server = net.createServer((c) => {
      if (this.refusing) return c.destroy();
      this.accepted++;
      const u = net.connect(port, host);
      const pair = [c, u];
      for (const s of pair) {
        this.live.add(s);
        s.on("error", () => {});
        s.on("close", () => {
          this.live.delete(s);
          for (const o of pair) o.destroy();
        });
      }
      c.pipe(u);
      u.pipe(c);
    });
  }

  async start() {
    await new Promise((r) => this.server.listen(0, "127.0.0.1", r));
    return `127.0.0.1:${this.server.address().port}`;
  }

  cut() {
    const n = this.live.size / 2;
    for (const s of [...this.live]) s.destroy();
    return n;
  }

  async close() {
    this.cut();
    await new Promise((r) => this.server.close(r));
  }
}
