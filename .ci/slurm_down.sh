#!/usr/bin/env bash
# Stop the one-node SLURM cluster that .ci/slurm_up.sh started.
#
# Usage: bash .ci/slurm_down.sh
#
# Cancels the jobs left in the queue, then stops slurmd and slurmctld by the
# PIDs in their PID files, and munged if slurm_up.sh started it. Running it
# when nothing is up does nothing and exits 0.
#
# Environment:
#   SLURM_CI_DIR  state folder used by slurm_up.sh (default /tmp/alexnet_jax_slurm)
set -euo pipefail

SLURM_CI_DIR="${SLURM_CI_DIR:-/tmp/alexnet_jax_slurm}"
export SLURM_CONF="$SLURM_CI_DIR/slurm.conf"

log() {
  echo "slurm_down: $*" >&2
}

# Print the PID stored in pid_file if that process is alive and runs
# program, and nothing otherwise.
live_pid() {
  local pid_file="$1" program="$2" pid
  [[ -s "$pid_file" ]] || return 0
  pid="$(<"$pid_file")"
  if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$program" ]]; then
    echo "$pid"
  fi
}

# Send TERM to the daemon in pid_file, wait up to 20 s, then KILL it.
stop_daemon() {
  local pid_file="$1" program="$2" pid
  pid="$(live_pid "$pid_file" "$program")"
  if [[ -z "$pid" ]]; then
    log "$program is not running"
    return
  fi
  log "stopping $program (PID $pid)"
  kill "$pid"
  if ! timeout 20 tail --pid="$pid" -f /dev/null; then
    log "$program (PID $pid) did not stop within 20 s, killing it"
    kill -9 "$pid" 2>/dev/null || true
  fi
}

# Cancel every job so that no slurmstepd or job process outlives slurmd,
# and wait up to 30 s for the queue to drain.
cancel_jobs() {
  [[ -n "$(live_pid "$SLURM_CI_DIR/slurmctld.pid" slurmctld)" ]] || return 0
  local jobs
  jobs="$(timeout 10 squeue --noheader --format=%i 2>/dev/null || true)"
  [[ -n "$jobs" ]] || return 0
  log "cancelling jobs: $(echo "$jobs" | tr '\n' ' ')"
  # Word splitting passes each job id as its own argument.
  # shellcheck disable=SC2086
  timeout 10 scancel $jobs || true
  local deadline=$((SECONDS + 30))
  while ((SECONDS < deadline)); do
    jobs="$(timeout 10 squeue --noheader --format=%i 2>/dev/null || true)"
    [[ -z "$jobs" ]] && return 0
    sleep 1
  done
  log "jobs still in the queue after 30 s: $(echo "$jobs" | tr '\n' ' ')"
}

main() {
  cancel_jobs
  stop_daemon "$SLURM_CI_DIR/slurmd.pid" slurmd
  stop_daemon "$SLURM_CI_DIR/slurmctld.pid" slurmctld
  if [[ -e "$SLURM_CI_DIR/munged.started" ]]; then
    stop_daemon /var/run/munge/munged.pid munged
    rm -f "$SLURM_CI_DIR/munged.started"
  fi
  rm -f "$SLURM_CI_DIR/slurm.env"
}

main "$@"
