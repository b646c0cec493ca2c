#!/usr/bin/env bash
# Builds the comparison peers into target/peers/:
#   naive-peer  perf/peers/naive (tokio + tokio-tungstenite + broadcast), cargo --release
#   uws-peer    perf/peers/uws/server.cpp against the uWebSockets + uSockets C/C++ sources
#               shipped inside the crates.io package libuwebsockets-sys (fetched with
#               `cargo fetch` through a throwaway helper project), g++ -O2, no TLS, no zlib.
#   uws-deflate-peer  the same with DEDICATED_COMPRESSOR (permessage-deflate per socket, zlib)
# Usage: perf/peers/build.sh [naive|uws|uws-deflate|all]   (default all; uws-deflate is built
# by perf/compression.sh). Needs cargo, g++, gcc (and zlib1g-dev for uws-deflate).
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

# build_uws_variant NAME CFLAGS LIBS: one uWS peer binary, $OUT/NAME.
build_uws_variant() {
    local name="$1" extra="$2" libs="$3" src obj="$OUT/$1-obj"
    echo "== uWS peer ($name)" >&2
    src="$(uws_source)"
    mkdir -p "$obj"
    local cflags="-O2 -DLIBUS_NO_SSL $extra -I$src/uSockets/src"
    for c in "$src"/uSockets/src/*.c "$src"/uSockets/src/eventing/epoll_kqueue.c; do
        gcc $cflags -std=c11 -c "$c" -o "$obj/$(basename "$c" .c).o"
    done
    g++ $cflags -std=c++20 -I"$src/src" -c "$ROOT/perf/peers/uws/server.cpp" -o "$obj/server.o"
    g++ -o "$OUT/$name" "$obj"/*.o $libs
    ls -l "$OUT/$name"
}

build_uws() {
    build_uws_variant uws-peer "-DUWS_NO_ZLIB" ""
}

# The per-socket compressor peer for perf/compression.sh: uWS's DEDICATED_COMPRESSOR (zlib;
# Debian's zlib1g-dev).
build_uws_deflate() {
    build_uws_variant uws-deflate-peer "-DPEER_COMPRESSION=uWS::DEDICATED_COMPRESSOR" "-lz"
}

case "$WHAT" in
    naive) build_naive ;;
    uws) build_uws ;;
    uws-deflate) build_uws_deflate ;;
    all) build_naive; build_uws ;;
    *) echo "usage: $0 [naive|uws|uws-deflate|all]" >&2; exit 2 ;;
esac
