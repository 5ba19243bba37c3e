#!/usr/bin/env bash
# Side-by-side recording CPU: our server vs Janus 1.1.2's Record&Play plugin, driven by the
# same aiortc client (client.py) with the same pre-encoded VP8 + Opus media, on 127.0.0.1.
#
#   run.sh [--streams N] [--size 320x240|640x480] [--seconds S] [--server janus|ours|both]
#          [--warmup W] [--rounds R] [--perf OUT] [--strace OUT] [--out FILE.jsonl]
#          [--ours-args "EXTRA SERVER FLAGS"] [--base-bin OTHER-BUILD-OF-OURS]
#
# For each server (both: janus, ours, janus, ours, ... R rounds, so a drift in the machine's
# load hits both): start it fresh, start N recording peers from one client process, wait
# until every peer is connected and the server confirms media, wait W s (default 5) more,
# then read the server's utime+stime (/proc/PID/stat: all its threads) and the client's
# over S s (default 30). Reported: server CPU s per stream-second = cpu / (N * S), the
# client's CPU, and the bytes each server recorded (its files on disk), which must be there.
# --perf OUT / --strace OUT run `perf record -g` / `strace -c -f` on the server during the
# window (written to OUT.<server>[.<round>]); they slow the server, so those CPU numbers
# are not comparable with plain runs (the JSON says "profiler").
# STRACE_OPTS replaces strace's `-c` (e.g. "-tt -e trace=write,epoll_wait" for a timeline).
#   env: PION_BIN (default target/release/pion-the-sky), JANUS_BIN (default /usr/bin/janus),
#        PION_TOOLS_DIR (the venv cache shared with interop/, default ~/.cache/pion-the-sky/tools), KEEP=1 keeps the
#        work dir (logs, configs, recordings; kept anyway on failure)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
streams=5 size=320x240 seconds=30 which=both warmup=5 rounds=1 perf= strace= out= ours_args= base_bin=
while [ $# -gt 0 ]; do
  case $1 in
    --streams) streams=$2 ;; --size) size=$2 ;; --seconds) seconds=$2 ;;
    --server) which=$2 ;; --warmup) warmup=$2 ;; --rounds) rounds=$2 ;;
    --perf) perf=$2 ;; --strace) strace=$2 ;; --out) out=$2 ;; --ours-args) ours_args=$2 ;;
    --base-bin) base_bin=$2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 64 ;;
  esac
  shift 2
done
case $size in 320x240) kbps=500 ;; 640x480) kbps=1000 ;;
  *) echo "run.sh: --size is 320x240 or 640x480" >&2; exit 64 ;; esac
case $which in both) servers=(janus ours) ;; janus|ours|base) servers=("$which") ;;
  *) echo "run.sh: --server is janus, ours or both" >&2; exit 64 ;; esac

pion_bin=${PION_BIN:-$here/../../target/release/pion-the-sky}
# --base-bin: a second build of ours ("base", e.g. main before a change) in every round too.
if [ -n "$base_bin" ] && [ "$which" = both ]; then servers=(janus base ours); fi
janus_bin=${JANUS_BIN:-/usr/bin/janus}
janus_lib=/usr/lib/x86_64-linux-gnu/janus
venv=${PION_TOOLS_DIR:-$HOME/.cache/pion-the-sky/tools}/venv
py=$venv/bin/python
work=$(mktemp -d "${TMPDIR:-/tmp}/sidebyside.XXXXXX")
server_pid= client_pid= prof_pid= results=()
tck=$(getconf CLK_TCK)

say() { echo "sidebyside [${SECONDS}s]: $*" >&2; }
fail() { echo "sidebyside: FAIL: $*" >&2; exit 1; }
stop_pid() {  # stop_pid PID: SIGTERM, up to 15 s, then SIGKILL (only processes we started)
  local p=$1
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null || return 0
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  stop_pid "$prof_pid"; stop_pid "$client_pid"; stop_pid "$server_pid"
  if [ "${KEEP:-}" = 1 ] || [ "$rc" != 0 ]; then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
free_port() {  # free_port tcp|udp: a port the kernel just handed out on 127.0.0.1
  "$py" -c 'import socket, sys
s = socket.socket(type=socket.SOCK_DGRAM if sys.argv[1] == "udp" else socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' "$1"
}
busy_ticks() {  # the whole machine's busy time: user nice system irq softirq steal of /proc/stat
  local _cpu user nice sys _idle _iowait irq softirq steal _rest
  read -r _cpu user nice sys _idle _iowait irq softirq steal _rest </proc/stat
  echo $(( user + nice + sys + irq + softirq + steal ))
}
cpu_ticks() {  # utime + stime of a process, all threads: fields 14 and 15 of /proc/PID/stat
  # (counted after the ")" that ends the command name, which may hold spaces)
  local s; s=$(cat "/proc/$1/stat") || return 1; s=${s##*) }
  set -- $s; echo $(( ${12} + ${13} ))
}

# --- client venv: interop/'s (the same aiortc pins), made once ---------------------------
. "$here/../../interop/venv.sh"
ensure_venv "$venv" "$here/../../interop/requirements.txt"

# --- media: made once with Debian's ffmpeg, cached beside the venv -----------------------
# 10 s of testsrc2 + a 440 Hz tone: VP8 at ~constant bitrate (min = max = target), a
# keyframe every 2 s (-g 60, so the loop point is a keyframe), no alt-ref frames (invisible
# frames would make packets that are not frames); Opus 48 kHz mono in 20 ms packets.
media_dir=${venv%/*}/sidebyside-media
media=$media_dir/media-$size-${kbps}k-v1.webm
if [ ! -s "$media" ]; then
  mkdir -p "$media_dir"
  say "encoding $media"
  ffmpeg -hide_banner -loglevel error -y -f lavfi -i "testsrc2=size=$size:rate=30" \
    -f lavfi -i "sine=frequency=440:sample_rate=48000" -t 10 -map 0:v -map 1:a \
    -c:v libvpx -b:v ${kbps}k -minrate ${kbps}k -maxrate ${kbps}k -bufsize ${kbps}k \
    -g 60 -keyint_min 60 -auto-alt-ref 0 -lag-in-frames 0 -deadline realtime -cpu-used 8 \
    -c:a libopus -b:a 32k -ac 1 -ar 48000 -frame_duration 20 "$media.tmp.webm"
  mv "$media.tmp.webm" "$media"
fi

# --- Janus: own config dir, HTTP transport + Record&Play only, loopback ICE --------------
start_janus() {  # sets server_pid, base, rec_dir
  local d=$work/janus-$1 port; port=$(free_port tcp)
  mkdir -p "$d/conf" "$d/recordings"
  rec_dir=$d/recordings base=http://127.0.0.1:$port/janus
  [ -f "$work/noloopback.so" ] ||
    gcc -shared -fPIC -O2 -o "$work/noloopback.so" "$here/noloopback.c" -ldl
  # Every plugin/transport/logger but the two we use is disabled by file name.
  off() { local keep=$2; (cd "$janus_lib/$1" && ls -- *.so 2>/dev/null) | grep -vx "$keep" |
    paste -sd, -; }
  cat >"$d/conf/janus.jcfg" <<EOF
general: {
	configs_folder = "$d/conf"
	plugins_folder = "$janus_lib/plugins"
	transports_folder = "$janus_lib/transports"
	events_folder = "$janus_lib/events"
	loggers_folder = "$janus_lib/loggers"
	debug_level = 4
}
media: {
}
nat: {
	# No STUN/TURN, no 1:1 NAT; candidates from lo only (the shim makes lo eligible).
	nice_debug = false
	ice_enforce_list = "lo"
	ice_ignore_list = ""
}
plugins: {
	disable = "$(off plugins libjanus_recordplay.so)"
}
transports: {
	disable = "$(off transports libjanus_http.so)"
}
loggers: {
	disable = "$(off loggers none)"
}
events: {
	broadcast = false
}
EOF
  cat >"$d/conf/janus.transport.http.jcfg" <<EOF
general: {
	json = "compact"
	base_path = "/janus"
	http = true
	ip = "127.0.0.1"
	port = $port
	https = false
}
admin: {
	admin_http = false
	admin_https = false
}
EOF
  cat >"$d/conf/janus.plugin.recordplay.jcfg" <<EOF
general: {
	path = "$rec_dir"
	events = false
}
EOF
  LD_PRELOAD=$work/noloopback.so "$janus_bin" -F "$d/conf" -o >"$d/janus.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do
    kill -0 "$server_pid" 2>/dev/null || { tail -20 "$d/janus.log" >&2; fail "Janus exited"; }
    curl -sf "$base/info" >/dev/null && { say "Janus $server_pid on $base"; return; }
    sleep 0.2
  done
  fail "Janus did not answer $base/info within 20 s"
}

# --- ours: as interop/run.sh starts it (one UDP port for all peers) ----------------------
start_ours() {  # sets server_pid, base, rec_dir
  local d=$work/${2:-ours}-$1 port udp; port=$(free_port tcp) udp=$(free_port udp)
  [ -x "$pion_bin" ] || fail "no server binary at $pion_bin (build it, or set PION_BIN)"
  mkdir -p "$d/data"
  rec_dir=$d/data base=http://127.0.0.1:$port
  # Every peer comes from 127.0.0.1: lift the per-address session limit (16).
  # shellcheck disable=SC2086  # --ours-args is split into words on purpose
  "$pion_bin" --bind 127.0.0.1 --port "$port" --ice-ip 127.0.0.1 --udp-port "$udp" \
    --data-dir "$rec_dir" --max-sessions-per-ip 0 $ours_args >"$d/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do
    kill -0 "$server_pid" 2>/dev/null || { tail -20 "$d/server.log" >&2; fail "server exited"; }
    [ "$(curl -s "$base/healthz" || true)" = ok ] && { say "ours $server_pid on $base"; return; }
    sleep 0.2
  done
  fail "our server did not answer /healthz within 20 s"
}

start_base() {  # ours, from --base-bin
  local keep=$pion_bin; pion_bin=$base_bin; start_ours "$1" base; pion_bin=$keep
}

# --- recordings on disk: both must have written N video + N audio tracks ------------------
check_recordings() {  # check_recordings SERVER: sets rec_bytes, rec_files
  local srv=$1 f n=0 bad=
  rec_bytes=0 rec_files=0
  if [ "$srv" = janus ]; then
    # Record&Play writes <id>.nfo + rec-<id>-video.mjr + rec-<id>-audio.mjr; an .mjr starts
    # "MJR00002", a length, then JSON naming the codec ("c": "vp8").
    for f in "$rec_dir"/*.mjr; do
      [ -s "$f" ] || continue
      rec_files=$((rec_files + 1)) rec_bytes=$((rec_bytes + $(stat -c %s "$f")))
      case $f in *-video.mjr)
        head -c 200 "$f" | grep -aq '"c": *"vp8"' && n=$((n + 1)) || bad="$bad $f" ;; esac
    done
    [ "$rec_files" = $((2 * streams)) ] && [ "$n" = "$streams" ] && [ -z "$bad" ] ||
      fail "Janus wrote $rec_files .mjr files, $n VP8 video ones (want $streams + $streams)$bad"
  else
    # VP8 + Opus recordings are WebM; each must demux to VP8 video and Opus audio.
    while IFS= read -r -d '' f; do
      rec_files=$((rec_files + 1)) rec_bytes=$((rec_bytes + $(stat -c %s "$f")))
      [ "$(ffprobe -v error -show_entries stream=codec_name -of csv=p=0 "$f" | sort |
        paste -sd, -)" = opus,vp8 ] && n=$((n + 1)) || bad="$bad $f"
    done < <(find "$rec_dir" -type f -name '*.webm' -size +0 -print0)
    [ "$n" = "$streams" ] && [ -z "$bad" ] ||
      fail "our server wrote $rec_files .webm files, $n with VP8 + Opus (want $streams)$bad"
  fi
}

# --- one measured run --------------------------------------------------------------------
run_one() {  # run_one SERVER ROUND
  local srv=$1 round=$2 tag=$1 c0 c1 s0 s1 t0 t1 m0 m1 ready done_line prof=none
  [ "$rounds" -gt 1 ] && tag=$srv.$round
  "start_$srv" "$round"
  local log=$work/client-$tag
  "$py" "$here/client.py" "${srv/base/ours}" "$base" "$media" --streams "$streams" \
    >"$log.jsonl" 2>"$log.err" &
  client_pid=$!
  for _ in $(seq 600); do  # up to 60 s to connect
    grep -q '"event"' "$log.jsonl" 2>/dev/null && break
    kill -0 "$client_pid" 2>/dev/null || break
    sleep 0.1
  done
  ready=$(grep -m1 '"event": "ready"' "$log.jsonl" || true)
  [ -n "$ready" ] || { cat "$log.jsonl" "$log.err" >&2; fail "$srv: the client never got ready"; }
  say "$srv: $streams peers ready: $ready"
  sleep "$warmup"

  # The window: CPU of both processes before and after S seconds (wall time measured too).
  if [ -n "$perf" ]; then
    prof=perf; perf record -g -q -p "$server_pid" -o "$perf.$tag" >"$work/perf-$tag.log" 2>&1 &
    prof_pid=$!
  elif [ -n "$strace" ]; then
    prof=strace; strace ${STRACE_OPTS:--c} -f -p "$server_pid" -o "$strace.$tag" 2>"$work/strace-$tag.log" &
    prof_pid=$!
  fi
  s0=$(cpu_ticks "$server_pid") c0=$(cpu_ticks "$client_pid") t0=$(date +%s.%N) m0=$(busy_ticks)
  sleep "$seconds"
  s1=$(cpu_ticks "$server_pid") c1=$(cpu_ticks "$client_pid") t1=$(date +%s.%N) m1=$(busy_ticks)
  if [ -n "$prof_pid" ]; then  # SIGINT: both write their report and detach
    kill -INT "$prof_pid" 2>/dev/null || true; wait "$prof_pid" 2>/dev/null || true; prof_pid=
  fi

  kill -TERM "$client_pid"
  for _ in $(seq 300); do kill -0 "$client_pid" 2>/dev/null || break; sleep 0.1; done
  wait "$client_pid" 2>/dev/null || { cat "$log.err" >&2; fail "$srv: the client failed"; }
  client_pid=
  done_line=$(grep -m1 '"event": "done"' "$log.jsonl") || fail "$srv: no summary from the client"
  say "$srv: client stopped"
  stop_pid "$server_pid"; server_pid=   # Janus closes any file still open on exit
  say "$srv: server stopped"
  check_recordings "$srv"

  local json build  # which binary ran: another build may replace ours between runs
  if [ "$srv" = janus ]; then
    build=$("$janus_bin" --version 2>/dev/null | grep -m1 -o '([0-9.]*)' || true)
  else
    local bin=$pion_bin; [ "$srv" = base ] && bin=$base_bin
    build="$(stat -c %y "$bin" | cut -c1-19) $(sha256sum "$bin" | cut -c1-12)"
  fi
  json=$("$py" - "$srv" "$round" "$streams" "$size" "$s0" "$s1" "$c0" "$c1" "$t0" "$t1" "$tck" \
    "$rec_bytes" "$rec_files" "$prof" "$warmup" "$done_line" "$ready" "$build" "$m0" "$m1" "$([ "$srv" != janus ] && echo "$ours_args")" <<'EOF'
import json, sys
(srv, rnd, n, size, s0, s1, c0, c1, t0, t1, tck, rb, rf, prof, warm, done, ready, build, m0, m1,
 extra) = sys.argv[1:]
n, tck, wall = int(n), int(tck), float(t1) - float(t0)
scpu, ccpu = (int(s1) - int(s0)) / tck, (int(c1) - int(c0)) / tck
peers = json.loads(done)["peers"]
print(json.dumps({
    "server": srv, "round": int(rnd), "streams": n, "size": size, "window_s": round(wall, 2),
    "warmup_s": float(warm), "server_cpu_s": scpu,
    "cpu_per_stream_s": round(scpu / (n * wall), 5),        # CPU s per stream-second
    "client_cpu_s": ccpu, "client_cpu_per_stream_s": round(ccpu / (n * wall), 5),
    "recorded_bytes": int(rb), "recorded_files": int(rf),
    "sent_payload_bytes": sum(p[k]["payload_bytes"] for p in peers for k in ("video", "audio")),
    "sent_rtp_packets": sum(p[k]["rtp_packets"] or 0 for p in peers for k in ("video", "audio")),
    "lost_reported": sum(p[k]["lost_reported"] or 0 for p in peers for k in ("video", "audio")),
    "server_candidates": json.loads(ready)["answer"]["candidates"],
    # CPU s that everything else on the machine used in the window: others' load skews both.
    # /proc/stat counts in ticks, the processes' times are exact: ±0.5 s is noise.
    "other_cpu_s": round((int(m1) - int(m0)) / tck - scpu - ccpu, 2),
    "profiler": prof, "build": build, "ours_args": extra}))
EOF
)
  echo "$json"
  [ -z "$out" ] || echo "$json" >>"$out"
  results+=("$json")
}

for round in $(seq "$rounds"); do
  for srv in "${servers[@]}"; do run_one "$srv" "$round"; done
done

# --- the table ---------------------------------------------------------------------------
"$py" - "${results[@]}" >&2 <<'EOF'
import json, sys
print(f"{'server':7} {'rnd':>3} {'streams':>7} {'size':>8} {'window s':>8} {'srv cpu s':>9} "
      f"{'cpu/stream-s':>12} {'client cpu/stream-s':>19} {'recorded B':>11} {'sent B':>11} "
      f"{'other cpu s':>11}")
for r in map(json.loads, sys.argv[1:]):
    print(f"{r['server']:7} {r['round']:>3} {r['streams']:>7} {r['size']:>8} "
          f"{r['window_s']:>8} {r['server_cpu_s']:>9.2f} {r['cpu_per_stream_s']:>12.5f} "
          f"{r['client_cpu_per_stream_s']:>19.5f} {r['recorded_bytes']:>11} "
          f"{r['sent_payload_bytes']:>11} {r['other_cpu_s']:>11.2f}")
EOF
