#!/usr/bin/env bash
# Builds pion-the-sky in release mode and serves it on http://localhost:8082.
# Any flag is passed to the server, e.g. ./run.sh -port=8090 -vcodec=vp8
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh
say "building (release)"
cargo leptos build --release
say "serving (the server prints the address to open)"
exec target/release/pion-the-sky "$@"
