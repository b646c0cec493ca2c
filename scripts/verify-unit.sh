#!/usr/bin/env bash
# Runs `systemd-analyze verify` on scripts/fanline.service. verify needs the ExecStart binary to
# exist: the unit is checked as is when /usr/local/bin/fanline is installed, otherwise a copy
# pointing at target/release/fanline is checked. Installs systemd (apt) if missing.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
command -v systemd-analyze >/dev/null || { apt-get update -qq && apt-get install -y -qq systemd; }
unit="$ROOT/scripts/fanline.service"
if [ ! -x /usr/local/bin/fanline ]; then
    bin="$ROOT/target/release/fanline"
    [ -x "$bin" ] || (cd "$ROOT" && cargo build --release -p fanline --bin fanline)
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    sed "s|/usr/local/bin/fanline|$bin|" "$unit" >"$tmp/fanline.service"
    unit="$tmp/fanline.service"
fi
# `systemctl reload fanline` must send SIGHUP (a full config reload, SPEC §2)
grep -qx 'ExecReload=/bin/kill -HUP $MAINPID' "$unit" || { echo "fanline.service: ExecReload must be '/bin/kill -HUP \$MAINPID'"; exit 1; }
# server.io_backend = "uring" needs the io_uring calls past the seccomp filter (@system-service
# lacks them), and a blocked call must fail with EPERM (fallback to epoll), not kill the process.
for call in io_uring_setup io_uring_enter io_uring_register; do
    grep -Eq "^SystemCallFilter=.*\b$call\b" "$unit" || { echo "fanline.service: SystemCallFilter must allow $call"; exit 1; }
done
grep -qx 'SystemCallErrorNumber=EPERM' "$unit" || { echo "fanline.service: SystemCallErrorNumber=EPERM missing"; exit 1; }
out="$(systemd-analyze verify "$unit" 2>&1)" || { echo "$out"; exit 1; }
# verify exits 0 on some warnings; treat any line about our unit as a failure.
if echo "$out" | grep -q 'fanline.service'; then echo "$out"; exit 1; fi
echo "systemd-analyze verify: ok ($unit)"
