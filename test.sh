#!/usr/bin/env bash
# Runs every test: unit and integration tests (cargo test), then the browser end-to-end suite
# (Playwright + Chromium with a fake camera, through `cargo leptos end-to-end`).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh

# Chromium for Playwright (never `npx playwright install`), ffmpeg/ffprobe for media checks,
# curl and Python's venv for the interop script (its clients are wheels from PyPI).
apt_install chromium ffmpeg curl python3 python3-venv
if [ ! -d end2end/node_modules/@playwright/test ]; then
  say "installing end-to-end test dependencies"
  (cd end2end && npm ci --silent --no-audit --no-fund)
fi

say "cargo test"
cargo test --workspace --exclude frontend

# The soak scenario, 30 s of it (RELIABILITY.md has the 30-minute run): recorders, viewers and
# hostile clients against a debug server (overflow checks on); fails on any lost session or a
# dead server. Both binaries were built by `cargo test`.
say "soak (30 s)"
SOAK_OUT="$(mktemp -d)"
target/debug/loadgen soak --seconds 30 --server-bin target/debug/pion-the-sky \
  --out "$SOAK_OUT/soak-smoke.json"
rm -rf "$SOAK_OUT"

# Independent clients (FFmpeg's WHIP muxer, aiortc WHIP and WHEP) against the debug server;
# their Python packages (wheels from PyPI) go to a venv in the tools cache.
say "interop (FFmpeg WHIP, aiortc WHIP/WHEP)"
PION_BIN=target/debug/pion-the-sky interop/run.sh

say "end-to-end (release build + Playwright)"
E2E_DATA="$(mktemp -d)"
trap 'rm -rf "$E2E_DATA"' EXIT
# The main (H264) server puts every browser peer on one UDP port (--udp-port, the mux); the
# config's other two servers use a port per peer: both media paths meet Chromium.
E2E_UDP_PORT="$(python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
PION_DATA_DIR="$E2E_DATA/h264" PION_ICE_IP=127.0.0.1 PION_UDP_PORT="$E2E_UDP_PORT" cargo leptos end-to-end --release
