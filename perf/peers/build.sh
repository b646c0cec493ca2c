#!/usr/bin/env bash
# Builds the comparison peers into target/peers/:
#   naive-peer  perf/peers/naive (tokio + tokio-tungstenite + broadcast), cargo --release
#   uws-peer    perf/peers/uws/server.cpp against the uWebSockets + uSockets C/C++ sources
#               shipped inside the crates.io package libuwebsockets-sys (fetched with
#               `cargo fetch` through a throwaway helper project), g++ -O2, no TLS, no zlib.
# Usage: perf/peers/build.sh [naive|uws|all]   (default all). Needs cargo, g++, gcc.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
OUT="$ROOT/target/peers"
WHAT="${1:-all}"
UWS_SYS_VERSION="0.0.10"
mkdir -p "$OUT"

build_naive() {
    echo "== naive peer" >&2
    local dir="$ROOT/perf/peers/naive"
    # Same dependency versions as the gateway: start from its lock file (cargo prunes extras).
    [ -f "$dir/Cargo.lock" ] || cp "$ROOT/Cargo.lock" "$dir/Cargo.lock"
    CARGO_TARGET_DIR="$OUT" nice cargo build --release --manifest-path "$dir/Cargo.toml" -j1
    ls -l "$OUT/release/naive-peer"
}

uws_source() {
    local helper="$OUT/uws-fetch"
    mkdir -p "$helper/src"
    cat >"$helper/Cargo.toml" <<TOML
[package]
name = "uws-fetch"
version = "0.0.0"
edition = "2021"
publish = false
[dependencies]
libuwebsockets-sys = "=$UWS_SYS_VERSION"
[workspace]
TOML
    echo 'fn main() {}' >"$helper/src/main.rs"
    cargo fetch --manifest-path "$helper/Cargo.toml" >&2
    local home="${CARGO_HOME:-$HOME/.cargo}"
    local src
    src="$(ls -d "$home"/registry/src/*/libuwebsockets-sys-"$UWS_SYS_VERSION"/uWebSockets | head -1)"
    [ -d "$src/src" ] && [ -d "$src/uSockets/src" ] || {
        echo "uWebSockets sources not found in libuwebsockets-sys $UWS_SYS_VERSION" >&2
        exit 1
    }
    echo "$src"
}

build_uws() {
    echo "== uWS peer" >&2
    local src obj="$OUT/uws-obj"
    src="$(uws_source)"
    mkdir -p "$obj"
    local cflags="-O2 -DLIBUS_NO_SSL -DUWS_NO_ZLIB -I$src/uSockets/src"
    for c in "$src"/uSockets/src/*.c "$src"/uSockets/src/eventing/epoll_kqueue.c; do
        gcc $cflags -std=c11 -c "$c" -o "$obj/$(basename "$c" .c).o"
    done
    g++ $cflags -std=c++20 -I"$src/src" -c "$ROOT/perf/peers/uws/server.cpp" -o "$obj/server.o"
    g++ -o "$OUT/uws-peer" "$obj"/*.o
    ls -l "$OUT/uws-peer"
}

case "$WHAT" in
    naive) build_naive ;;
    uws) build_uws ;;
    all) build_naive; build_uws ;;
    *) echo "usage: $0 [naive|uws|all]" >&2; exit 2 ;;
esac
