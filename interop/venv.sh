# Sourced by interop/run.sh and bench/sidebyside/run.sh: the aiortc (+ ffmpeg) venv they share.
#   ensure_venv VENV REQUIREMENTS  makes VENV from the binary wheels in REQUIREMENTS, once; it
#   is rebuilt only when REQUIREMENTS changed since it was made. Needs a `say` function.
ensure_venv() {
  local venv=$1 req=$2
  cmp -s "$req" "$venv/requirements.txt" 2>/dev/null && return 0
  say "installing the Python clients (aiortc) into $venv"
  rm -rf "$venv"
  "$(command -v python3.11 || command -v python3)" -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check --only-binary=:all: -r "$req"
  cp "$req" "$venv/requirements.txt"
}
