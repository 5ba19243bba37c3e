#!/usr/bin/env bash
# WHIP ingest / WHEP playback interop against independent clients: ffmpeg's own `whip` muxer
# (H264 + Opus) and aiortc (VP8 + Opus, and the WHEP viewer). Loopback only.
#   env: PION_BIN (server binary, default target/debug/pion-the-sky), PION_TOOLS_DIR (venv
#        cache, default ~/.cache/pion-the-sky/tools), PUSH_SECS (whole seconds, default 6),
#        KEEP=1 keeps the work dir (logs, JSON summaries; kept anyway on failure)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${PION_BIN:-$here/../target/debug/pion-the-sky}
venv=${PION_TOOLS_DIR:-$HOME/.cache/pion-the-sky/tools}/venv
secs=${PUSH_SECS:-6}
work=$(mktemp -d "${TMPDIR:-/tmp}/pion-interop.XXXXXX")
pid=
py=$venv/bin/python

say() { echo "interop: $*"; }
fail() { echo "interop: FAIL: $*" >&2; exit 1; }
cleanup() {
  local rc=$?
  stop_server
  if [ "$rc" != 0 ] && [ -f "$work/server.log" ]; then
    echo "--- last lines of the server log ($work/server.log) ---" >&2
    tail -n 40 "$work/server.log" >&2
  fi
  if [ "${KEEP:-}" = 1 ] || { [ "$rc" != 0 ] && [ -f "$work/server.log" ]; }; then
    say "kept $work"
  else
    rm -rf "$work"
  fi
}
start_server() {  # start_server [extra server args]: sets pid, port, base
  port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')
  base=http://127.0.0.1:$port
  rm -rf "$work/data"; mkdir -p "$work/data"
  "$bin" --bind 127.0.0.1 --port "$port" --ice-ip 127.0.0.1 --data-dir "$work/data" "$@" \
    >"$work/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || fail "the server exited at startup"
    [ "$(curl -s "$base/healthz" || true)" = ok ] && { say "server $pid on $base $*"; return; }
    sleep 0.2
  done
  fail "the server did not answer /healthz within 20 s"
}
stop_server() {
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=
}
trap cleanup EXIT

[ -x "$bin" ] || fail "no server binary at $bin (build it, or set PION_BIN)"

# The venv is reused; it is rebuilt only when requirements.txt changed since it was made.
. "$here/venv.sh"
ensure_venv "$venv" "$here/requirements.txt"

whip_aiortc() { "$py" "$here/whip_aiortc.py" "$@" >"$work/whip.json" || {
  cat "$work/whip.json" >&2; return 1; }; }
whep() {  # whep PATH NAME...: play PATH, check it against the named recordings
  # Stop 3 s after the clips should have ended: a server may loop the playlist.
  say "WHEP $1"
  "$py" "$here/whep_aiortc.py" "$base$1" --seconds $(( (${#} - 1) * secs + 3 )) \
    >"$work/whep.json" ||
    { cat "$work/whep.json" >&2; fail "WHEP $1 failed"; }
  "$py" "$here/check.py" whep "$work/whep.json" "$work/recs.json" "${@:2}"
}

# --- ingest from two independent stacks, then playback ----------------------------------
# Through the UDP mux: every peer's media on one port (the token server below uses a port
# per peer).
udp_port=$("$py" -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start_server --udp-port "$udp_port"
say "ffmpeg WHIP push: H264 + Opus, $secs s"
"$here/ffmpeg_whip.sh" "$base/whip?name=interop-ffmpeg" "$secs" 2>"$work/ffmpeg.log" ||
  { cat "$work/ffmpeg.log" >&2; fail "ffmpeg WHIP push failed"; }
say "aiortc WHIP push: VP8 + Opus, $secs s"
whip_aiortc "$base/whip" --seconds "$secs" --name interop-aiortc || fail "aiortc WHIP push failed"
"$py" "$here/check.py" recordings "$base" "$work/recs.json" \
  "interop-ffmpeg:h264:$secs" "interop-aiortc:vp8:$secs"
read -r ffmpeg_id aiortc_id < <("$py" -c 'import json, sys; r = json.load(open(sys.argv[1]))
print(r["interop-ffmpeg"]["id"], r["interop-aiortc"]["id"])' "$work/recs.json")
whep "/whep/$ffmpeg_id" interop-ffmpeg
whep "/whep/$aiortc_id" interop-aiortc
whep /whep interop-ffmpeg interop-aiortc   # all recordings, oldest first

# --- watching live: an aiortc WHEP viewer on /whep/live/{session} while aiortc pushes ----
say "aiortc WHIP push, watched live by aiortc WHEP"
"$py" "$here/whip_aiortc.py" "$base/whip" --seconds 10 --name interop-live >"$work/whip-live.json" &
push=$!
session=
for _ in $(seq 100); do
  session=$(curl -s "$base/api/sessions" | "$py" -c 'import json, sys
print(next((s["id"] for s in json.load(sys.stdin) if s["kind"] == "record"), ""))')
  [ -n "$session" ] && break
  sleep 0.1
done
[ -n "$session" ] || fail "the live push's session did not appear in /api/sessions"
"$py" "$here/whep_aiortc.py" "$base/whep/live/$session" --seconds 6 >"$work/whep-live.json" ||
  { cat "$work/whep-live.json" >&2; fail "WHEP /whep/live/$session failed"; }
wait "$push" || { cat "$work/whip-live.json" >&2; fail "the live push failed"; }
"$py" "$here/check.py" live "$work/whep-live.json"
stop_server

# --- bearer token -----------------------------------------------------------------------
start_server --token t0k3n
whip_aiortc "$base/whip" --expect-status 401 ||
  fail "WHIP without the token was not refused with 401"
whip_aiortc "$base/whip" --token wrong --expect-status 401 ||
  fail "WHIP with a wrong token was not refused with 401"
if "$here/ffmpeg_whip.sh" "$base/whip" 1 2>"$work/ffmpeg.log" ||
  ! grep -q 401 "$work/ffmpeg.log"; then
  cat "$work/ffmpeg.log" >&2; fail "ffmpeg WHIP without the token was not refused with 401"
fi
say "no token / wrong token: 401 (aiortc and ffmpeg)"
whip_aiortc "$base/whip" --seconds 2 --token t0k3n --name tok-aiortc ||
  fail "WHIP with the token failed"
"$here/ffmpeg_whip.sh" "$base/whip?name=tok-ffmpeg" 2 t0k3n 2>"$work/ffmpeg.log" ||
  { cat "$work/ffmpeg.log" >&2; fail "ffmpeg WHIP push with -authorization failed"; }
say "token accepted from aiortc and ffmpeg (201)"
"$py" "$here/check.py" recordings "$base" "$work/recs.json" \
  tok-aiortc:vp8:2 tok-ffmpeg:h264:2
say "PASS"
