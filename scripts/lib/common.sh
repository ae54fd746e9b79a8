# scripts/lib/common.sh — shared helpers of the bash test scripts (source it; bash 4.4 or later).
#
# Gives: say/fail/skip messages, a cleanup stack run on every exit path, Debian package
# installation, bounded waiting, and assertions that print what they checked.

# The name the messages start with; scripts set it before sourcing.
: "${script_name:=$(basename "$0")}"

say() { printf '%s: %s\n' "$script_name" "$*" >&2; }
fail() { printf '%s: FAIL: %s\n' "$script_name" "$*" >&2; exit 1; }
skip() { printf 'SKIPPED: %s: %s\n' "$script_name" "$*"; exit 0; }

# ------------------------------------------------------------------------------ cleanup stack

# Commands pushed with `on_exit` run in reverse order when the script exits, however it exits
# (success, failure, set -e, INT/TERM/HUP). Each runs even if an earlier one fails.
cleanup_stack=()
on_exit() { cleanup_stack+=("$1"); }
run_cleanup() {
  local status=$? i
  trap '' INT TERM HUP
  set +e
  for ((i = ${#cleanup_stack[@]} - 1; i >= 0; i--)); do
    eval "${cleanup_stack[i]}" >/dev/null 2>&1
  done
  cleanup_stack=()
  return "$status"
}
trap run_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# Kills a process we started (by pid) and waits for it, at most 5 s before KILL.
stop_pid() {  # pid
  local pid=$1 i
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

# -------------------------------------------------------------------------------- packages

# Installs the Debian packages that are missing (apt-get update first), as root.
ensure_packages() {  # package...
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  say "installing ${missing[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ---------------------------------------------------------------------------------- waiting

# Runs `command...` every 0.2 s until it succeeds or `seconds` pass (bounded; readiness of a
# daemon has no event to wait on). Returns 1 on timeout. One slow try can overrun the bound
# by its own duration, no more.
wait_until() {  # seconds command...
  local deadline=$((SECONDS + $1)); shift
  while [ "$SECONDS" -lt "$deadline" ]; do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  return 1
}

# --------------------------------------------------------------------------------- assertions

checks_passed=0
pass() { checks_passed=$((checks_passed + 1)); printf '%s: ok: %s\n' "$script_name" "$*"; }

# Asserts that `file` contains a line matching the extended regex `pattern`.
expect_line() {  # file pattern description
  grep -Eq -- "$2" "$1" || { say "no line matching /$2/ in $1 (last 40 lines):"; tail -40 "$1" | sed 's/^/    /' >&2; fail "$3"; }
  pass "$3"
}
# Asserts that some line of `file` matching the regex `pattern` contains the fixed `text`.
expect_line_with() {  # file pattern text description
  grep -E -- "$2" "$1" | grep -qF -- "$3" \
    || { say "no line matching /$2/ with '$3' in $1 (last 40 lines):"; tail -40 "$1" | sed 's/^/    /' >&2; fail "$4"; }
  pass "$4"
}
expect_no_line() {  # file pattern description
  if grep -Eq -- "$2" "$1"; then say "unexpected line matching /$2/ in $1:"; grep -E -- "$2" "$1" | sed 's/^/    /' >&2; fail "$3"; fi
  pass "$3"
}
expect_status() {  # actual expected description
  [ "$1" = "$2" ] || fail "$3: exit status $1, expected $2"
  pass "$3"
}

# The release binary of this checkout (scripts/setup builds it). Never builds here: the test
# suite calls these scripts while `swift test` holds the build directory.
checkout_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
recur_binary() {
  printf '%s' "${RECUR_BINARY:-$checkout_root/.build/release/recur}"
}
