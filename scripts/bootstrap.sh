# Installs what building pion-the-sky needs, idempotently; sourced by ./run.sh and ./test.sh.
# A second run only checks versions (a few seconds).
#
# Tools go to $PION_TOOLS_DIR (default ~/.cache/pion-the-sky/tools), outside the repository,
# so fresh clones reuse them:
#   - the wasm32-unknown-unknown target (rustup)
#   - cargo-leptos 0.3.10 built with `no_downloads` (0.3.11 needs rustc 1.96)
#   - wasm-bindgen-cli matching the `wasm-bindgen` crate pinned in Cargo.lock
#   - wasm-opt from npm `binaryen@132` (Debian's binaryen 108 breaks hydration)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${PION_TOOLS_DIR:-$HOME/.cache/pion-the-sky/tools}"
mkdir -p "$TOOLS"
export PATH="$TOOLS/bin:$TOOLS/node_modules/.bin:$HOME/.cargo/bin:$PATH"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

apt_install() {
  # Debian packages, installed only when missing (needs root, as on our machines).
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

command -v cargo >/dev/null || { echo "error: cargo not found; install Rust with rustup first" >&2; exit 1; }
command -v npm >/dev/null || apt_install nodejs npm
# The codec crate: libvpx (VP8) through pkg-config; nasm makes openh264's build use assembly.
apt_install libvpx-dev pkg-config nasm

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

if [ "$(cargo-leptos --version 2>/dev/null || true)" != "cargo-leptos 0.3.10" ]; then
  say "installing cargo-leptos 0.3.10 (about 20 minutes on 2 cores, once)"
  cargo install --locked cargo-leptos --version 0.3.10 --features no_downloads --root "$TOOLS"
fi

WBG_VERSION="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock")"
if [ "$(wasm-bindgen --version 2>/dev/null || true)" != "wasm-bindgen $WBG_VERSION" ]; then
  say "installing wasm-bindgen-cli $WBG_VERSION (about 3 minutes, once)"
  # Not --locked: its lock file wants a crate version the registry no longer has.
  cargo install wasm-bindgen-cli --version "$WBG_VERSION" --root "$TOOLS" --force
fi

if [ "$(wasm-opt --version 2>/dev/null | awk '{print $3}')" != "132" ]; then
  say "installing wasm-opt (npm binaryen@132)"
  npm install --silent --no-audit --no-fund --prefix "$TOOLS" binaryen@132 >/dev/null
fi
