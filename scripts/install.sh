#!/usr/bin/env bash
# Installs fanline as a systemd service:
#   /usr/local/bin/fanline                      the release binary (built if missing)
#   /etc/fanline/fanline.toml                   example config (kept if one exists)
#   /etc/systemd/system/fanline.service         the unit (Type=notify, sandboxed)
# Usage: sudo scripts/install.sh [--no-start] [--prefix DESTDIR]
# DESTDIR (default /) lets packagers stage the files; systemctl is skipped then.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DESTDIR=""
START=1
while [ $# -gt 0 ]; do
    case "$1" in
        --no-start) START=0 ;;
        --prefix) DESTDIR="$2"; shift ;;
        *) echo "usage: $0 [--no-start] [--prefix DESTDIR]" >&2; exit 2 ;;
    esac
    shift
done
BIN="$ROOT/target/release/fanline"
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -p fanline --bin fanline)

install -D -m 0755 "$BIN" "$DESTDIR/usr/local/bin/fanline"
install -d -m 0755 "$DESTDIR/etc/fanline"
if [ -e "$DESTDIR/etc/fanline/fanline.toml" ]; then
    echo "keeping existing $DESTDIR/etc/fanline/fanline.toml" >&2
else
    # World-readable is fine for the example; put secrets in files only root can read.
    install -m 0644 "$ROOT/scripts/fanline.toml" "$DESTDIR/etc/fanline/fanline.toml"
fi
install -D -m 0644 "$ROOT/scripts/fanline.service" "$DESTDIR/etc/systemd/system/fanline.service"

if [ -z "$DESTDIR" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemd-analyze verify /etc/systemd/system/fanline.service
    systemctl daemon-reload
    if [ "$START" -eq 1 ]; then
        systemctl enable --now fanline.service
        systemctl --no-pager status fanline.service || true
    fi
else
    echo "installed under ${DESTDIR:-/}; systemd not running here, not started" >&2
fi
