#!/usr/bin/env bash
# Builds the web demo's WebAssembly (docs/web.md): the convnet-web crate for wasm32 with SIMD128,
# then wasm-bindgen's JavaScript glue, into web/pkg/ (convnet_web.js, convnet_web_bg.wasm).
#
# Needs the wasm32-unknown-unknown target (`rustup target add wasm32-unknown-unknown`) and the
# wasm-bindgen CLI of exactly the version of the wasm-bindgen crate in Cargo.lock; this script
# installs the CLI with `cargo install` when it is missing or another version (about 2.5
# minutes once). Then: `convnet serve-demo` and open http://127.0.0.1:8000/.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown
fi
version="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)"
if [ -z "$version" ]; then
    echo "error: no wasm-bindgen in Cargo.lock" >&2
    exit 1
fi
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }')" != "$version" ]; then
    echo "installing wasm-bindgen-cli $version (once)"
    # Not --locked: the CLI's own lock file pins a webpki-roots release that the registry
    # mirror of our CI machines does not have (seen 2026-12-03); the version itself is pinned.
    cargo install wasm-bindgen-cli --version "$version"
fi

# SIMD128 (every current browser has it) lets LLVM vectorise the portable loops; no debug info
# (the release profile keeps some for profiling natively), which would multiply the size.
RUSTFLAGS="-C target-feature=+simd128" CARGO_PROFILE_RELEASE_DEBUG=0 \
    cargo build --locked --release --target wasm32-unknown-unknown -p convnet-web
wasm-bindgen --target web --no-typescript --out-dir web/pkg \
    target/wasm32-unknown-unknown/release/convnet_web.wasm
ls -l web/pkg/convnet_web_bg.wasm
