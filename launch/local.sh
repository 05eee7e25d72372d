#!/usr/bin/env bash
# Run N JAX processes of main.py on this machine, connected over 127.0.0.1.
#
# Usage: launch/local.sh N [main.py flags...]
#
#   launch/local.sh 2 --config=configs/digits.py --workdir=/tmp/alexnet-local \
#     --config.num_train_steps=20
#
# Process i runs
#   $PYTHON main.py --coordinator_address=127.0.0.1:$PORT --num_processes=N
#     --process_id=i --host_device_count=$DEVICES_PER_PROCESS [flags...]
# with its output in $LOG_DIR/process_<i>.log. The script waits for all
# processes and exits with the first non-zero status. When one process
# fails, it sends SIGTERM to the others and SIGKILL KILL_GRACE seconds later,
# since a process blocked in a collective with the failed one cannot finish
# its step. Ctrl-C or SIGTERM is passed on to all processes as SIGTERM.
#
# Environment:
#   PYTHON               Python executable (default: python)
#   PORT                 coordinator port (default: a free port on 127.0.0.1)
#   DEVICES_PER_PROCESS  CPU devices per process (default: 2)
#   KILL_GRACE           seconds from SIGTERM to SIGKILL after a failure
#                        (default: 30)
#   LOG_DIR              folder for the per-process logs (default: the
#                        --workdir flag's value plus /logs when it is a local
#                        path, else a new folder under /tmp)
set -euo pipefail

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

log() {
  echo "local.sh: $*" >&2
}

if [[ $# -ge 1 && ("$1" == -h || "$1" == --help) ]]; then
  usage
  exit 0
fi
if [[ $# -lt 1 ]]; then
  usage >&2
  exit 2
fi
if ! [[ "$1" =~ ^[1-9][0-9]*$ ]]; then
  log "ERROR: the process count must be a positive integer, got '$1'"
  exit 2
fi
num_processes="$1"
shift

repo_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
DEVICES_PER_PROCESS="${DEVICES_PER_PROCESS:-2}"
KILL_GRACE="${KILL_GRACE:-30}"

# Print a TCP port on 127.0.0.1 that is free now. Another program may take
# it before the coordinator binds it, which then fails with a bind error.
free_port() {
  "$PYTHON" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# Print the value of the last --workdir=... flag, or nothing.
workdir_flag() {
  local arg value=""
  for arg in "$@"; do
    if [[ "$arg" == --workdir=* ]]; then
      value="${arg#--workdir=}"
    fi
  done
  echo "$value"
}

PORT="${PORT:-$(free_port)}"
if [[ -z "${LOG_DIR:-}" ]]; then
  workdir="$(workdir_flag "$@")"
  if [[ -n "$workdir" && "$workdir" != *://* ]]; then
    LOG_DIR="$workdir/logs"
  else
    LOG_DIR="$(mktemp -d /tmp/alexnet-local-logs.XXXXXX)"
  fi
fi
mkdir -p "$LOG_DIR"

pids=()

# shellcheck disable=SC2317  # called by traps and on failure
stop_all() {
  local pid
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
}

# shellcheck disable=SC2317  # called by the traps
on_signal() {
  log "received a signal, stopping all processes"
  stop_all
}
trap on_signal INT TERM

log "starting $num_processes processes, coordinator 127.0.0.1:$PORT," \
  "$DEVICES_PER_PROCESS devices each, logs in $LOG_DIR"
for ((i = 0; i < num_processes; i++)); do
  "$PYTHON" "$repo_dir/main.py" \
    "--coordinator_address=127.0.0.1:$PORT" \
    "--num_processes=$num_processes" \
    "--process_id=$i" \
    "--host_device_count=$DEVICES_PER_PROCESS" \
    "$@" >"$LOG_DIR/process_$i.log" 2>&1 &
  pids+=("$!")
done

# Poll instead of 'wait', so that a failure is seen within a second and the
# grace period before SIGKILL can be enforced. bash reaps each child when it
# exits and keeps its status for the 'wait' below.
status=0
kill_deadline=""
running=("${!pids[@]}")
while ((${#running[@]} > 0)); do
  still_running=()
  for i in "${running[@]}"; do
    if kill -0 "${pids[i]}" 2>/dev/null; then
      still_running+=("$i")
      continue
    fi
    if wait "${pids[i]}"; then
      log "process $i finished"
      continue
    else
      process_status=$?
    fi
    log "process $i failed with status $process_status," \
      "see $LOG_DIR/process_$i.log"
    if ((status == 0)); then
      status="$process_status"
      stop_all
      kill_deadline=$((SECONDS + KILL_GRACE))
    fi
  done
  running=("${still_running[@]}")
  if [[ -n "$kill_deadline" ]] && ((SECONDS >= kill_deadline)); then
    for i in "${running[@]}"; do
      log "process $i did not stop within ${KILL_GRACE}s, killing it"
      kill -KILL "${pids[i]}" 2>/dev/null || true
    done
    kill_deadline=""
  fi
  if ((${#running[@]} > 0)); then
    sleep 0.5
  fi
done
exit "$status"
