#!/usr/bin/env bash
# Install and start a one-node SLURM cluster on this machine for the tests.
#
# Usage: bash .ci/slurm_up.sh
#
# Runs as root on Debian 12. It installs slurm-wlm and munge when they are
# missing, starts munged, writes slurm.conf into SLURM_CI_DIR and starts
# slurmctld and slurmd. It then waits up to SLURM_UP_TIMEOUT seconds for the
# node to become idle. If it does not, it prints the daemon logs, stops the
# daemons and exits non-zero.
# Running it again while the cluster is up changes nothing.
#
# On success it writes "export SLURM_CONF=..." to $SLURM_CI_DIR/slurm.env and
# prints the same line as the last line of its output, so a caller can run
#   bash .ci/slurm_up.sh && . /tmp/alexnet_jax_slurm/slurm.env
# Tests skip their SLURM checks while SLURM_CONF is unset.
# .ci/slurm_down.sh stops the daemons again.
#
# Environment:
#   SLURM_CI_DIR      state folder (default /tmp/alexnet_jax_slurm)
#   SLURM_UP_TIMEOUT  seconds to wait for the node to become idle (default 60)
set -euo pipefail

SLURM_CI_DIR="${SLURM_CI_DIR:-/tmp/alexnet_jax_slurm}"
SLURM_UP_TIMEOUT="${SLURM_UP_TIMEOUT:-60}"
export SLURM_CONF="$SLURM_CI_DIR/slurm.conf"
NODE_NAME="$(hostname)"
MUNGE_PID_FILE=/var/run/munge/munged.pid

log() {
  echo "slurm_up: $*" >&2
}

# Print the PID stored in pid_file if that process is alive and runs
# program, and nothing otherwise. Checking the program name guards against
# a stale PID file whose number the kernel has handed out again.
live_pid() {
  local pid_file="$1" program="$2" pid
  [[ -s "$pid_file" ]] || return 0
  pid="$(<"$pid_file")"
  if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$program" ]]; then
    echo "$pid"
  fi
}

# Print the node state as sinfo reports it (idle, mixed, down*, ...), or
# nothing when slurmctld does not respond.
node_state() {
  timeout 10 sinfo --noheader --nodes="$NODE_NAME" --format=%T 2>/dev/null |
    head -n1 || true
}

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null &&
    command -v sbatch >/dev/null && command -v munged >/dev/null; then
    return
  fi
  log "installing slurm-wlm and munge"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y slurm-wlm munge
}

start_munge() {
  if [[ -n "$(live_pid "$MUNGE_PID_FILE" munged)" ]] &&
    munge -n </dev/null | unmunge >/dev/null 2>&1; then
    log "munged is already running"
    return
  fi
  mkdir -p /etc/munge /var/run/munge /var/log/munge /var/lib/munge
  # The Debian munge package usually creates the key on install.
  if [[ ! -s /etc/munge/munge.key ]]; then
    log "creating /etc/munge/munge.key"
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown munge:munge /etc/munge/munge.key
  chmod 400 /etc/munge/munge.key
  chown munge:munge /etc/munge /var/run/munge /var/log/munge /var/lib/munge
  # munged runs as root here and warns that its log folder belongs to munge.
  # --force makes it start anyway.
  munged --force
  touch "$SLURM_CI_DIR/munged.started"
  munge -n </dev/null | unmunge >/dev/null
  log "munged started (PID $(<"$MUNGE_PID_FILE"))"
}

write_conf() {
  mkdir -p "$SLURM_CI_DIR/state" "$SLURM_CI_DIR/spool"
  # cgroup plugins need a cgroup hierarchy that a sandbox may not provide,
  # so tasks are tracked through /proc and not bound to cores. Ports are
  # moved off the defaults (6817, 6818) to stay clear of a system SLURM.
  # config_overrides keeps the node usable when this machine has fewer CPUs
  # or less memory than the node line declares.
  cat >"$SLURM_CONF" <<EOF
ClusterName=alexnet-ci
SlurmctldHost=$NODE_NAME
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
SlurmdParameters=config_overrides
SlurmctldPort=16817
SlurmdPort=16818
StateSaveLocation=$SLURM_CI_DIR/state
SlurmdSpoolDir=$SLURM_CI_DIR/spool
SlurmctldPidFile=$SLURM_CI_DIR/slurmctld.pid
SlurmdPidFile=$SLURM_CI_DIR/slurmd.pid
SlurmctldLogFile=$SLURM_CI_DIR/slurmctld.log
SlurmdLogFile=$SLURM_CI_DIR/slurmd.log
NodeName=$NODE_NAME CPUs=2 RealMemory=8000 State=UNKNOWN
PartitionName=debug Nodes=$NODE_NAME Default=YES MaxTime=INFINITE State=UP
EOF
}

# Stop slurmd and slurmctld by the PIDs in their PID files, if they run.
stop_daemons() {
  local pid
  for name in slurmd slurmctld; do
    pid="$(live_pid "$SLURM_CI_DIR/$name.pid" "$name")"
    if [[ -n "$pid" ]]; then
      log "stopping $name (PID $pid)"
      kill "$pid"
      timeout 20 tail --pid="$pid" -f /dev/null || kill -9 "$pid"
    fi
  done
}

# Wait up to 10 s for the daemon to write its PID file, so that it can be
# stopped by that PID later.
wait_for_pid_file() {
  local name="$1" deadline=$((SECONDS + 10))
  while [[ -z "$(live_pid "$SLURM_CI_DIR/$name.pid" "$name")" ]]; do
    if ((SECONDS >= deadline)); then
      log "ERROR: $name did not write $SLURM_CI_DIR/$name.pid within 10 s"
      return 1
    fi
    sleep 0.2
  done
}

wait_for_idle() {
  local deadline=$((SECONDS + SLURM_UP_TIMEOUT)) state=""
  while ((SECONDS < deadline)); do
    state="$(node_state)"
    if [[ "$state" == idle ]]; then
      log "node $NODE_NAME is idle"
      return 0
    fi
    sleep 1
  done
  log "ERROR: node $NODE_NAME did not become idle within" \
    "${SLURM_UP_TIMEOUT}s (last state: '${state:-no response}')"
  for file in slurmctld.log slurmd.log; do
    log "last lines of $SLURM_CI_DIR/$file:"
    tail -n 30 "$SLURM_CI_DIR/$file" >&2 || true
  done
  return 1
}

write_env() {
  echo "export SLURM_CONF=$SLURM_CONF" >"$SLURM_CI_DIR/slurm.env"
  echo "export SLURM_CONF=$SLURM_CONF"
}

main() {
  if [[ "$(id -u)" != 0 ]]; then
    log "ERROR: must run as root (it installs packages and starts daemons)"
    exit 1
  fi
  install_packages
  mkdir -p "$SLURM_CI_DIR"
  start_munge

  local ctld_pid slurmd_pid state
  ctld_pid="$(live_pid "$SLURM_CI_DIR/slurmctld.pid" slurmctld)"
  slurmd_pid="$(live_pid "$SLURM_CI_DIR/slurmd.pid" slurmd)"
  state="$(node_state)"
  if [[ -n "$ctld_pid" && -n "$slurmd_pid" &&
    "$state" =~ ^(idle|mixed|allocated|completing)$ ]]; then
    log "cluster is already up (slurmctld $ctld_pid, slurmd $slurmd_pid," \
      "node $state)"
    write_env
    return
  fi

  # Stop the daemons of an earlier start that is only partly alive.
  stop_daemons
  # Start from empty state and logs, so that a node marked down by an
  # earlier run does not carry over and the logs show this start only.
  rm -rf "$SLURM_CI_DIR/state" "$SLURM_CI_DIR/spool" \
    "$SLURM_CI_DIR/slurmctld.log" "$SLURM_CI_DIR/slurmd.log"
  write_conf
  log "starting slurmctld and slurmd with $SLURM_CONF"
  slurmctld -f "$SLURM_CONF"
  slurmd -f "$SLURM_CONF"
  if ! wait_for_pid_file slurmctld || ! wait_for_pid_file slurmd ||
    ! wait_for_idle; then
    stop_daemons
    exit 1
  fi
  write_env
}

main "$@"
