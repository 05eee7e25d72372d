#!/usr/bin/env bash
# Create a Cloud TPU VM pod slice, install this project on every worker and
# train there with one JAX process per worker.
#
# Prints every command and runs nothing unless --run is given. Run
# launch/tpu_pod.sh --help for the options.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: launch/tpu_pod.sh --name=NAME --zone=ZONE [options] [-- main.py flags...]

Create a TPU VM pod slice, copy this repository to every worker, install the
requirements, run main.py on all workers at once and, with --delete, delete
the slice. Without --run it prints the gcloud commands and runs nothing.

Options (each also reads the environment variable in brackets):
  --name=NAME              TPU VM name [TPU_NAME], required
  --zone=ZONE              zone, e.g. us-central2-b [TPU_ZONE], required
  --project=PROJECT        Google Cloud project [TPU_PROJECT]
                           (default: the gcloud configuration's project)
  --accelerator-type=TYPE  slice type [TPU_ACCELERATOR_TYPE] (default: v4-16)
  --version=VERSION        TPU VM runtime [TPU_VERSION]
                           (default: tpu-ubuntu2204-base)
  --config=FILE            main.py config [CONFIG]
                           (default: configs/ilsvrc2012.py)
  --workdir=PATH           checkpoints and metrics [WORKDIR]; every worker
                           must reach it, e.g. gs://BUCKET/alexnet_jax/run1.
                           Required with --run.
  --repo-url=URL           git clone URL [REPO_URL]; without it the
                           committed tree of this checkout (git archive HEAD)
                           is copied with scp
  --branch=BRANCH          branch to clone with --repo-url [REPO_BRANCH]
                           (default: main)
  --python-version=X.Y     Python for the workers' virtual environment
                           [PYTHON_VERSION] (default: 3.11, since jax needs
                           3.11 or newer and the runtime image ships 3.10)
  --steps=LIST             comma-separated subset of
                           create,copy,install,train,delete
                           (default: create,copy,install,train)
  --delete                 add the delete step at the end
  --dry-run                print the commands only (the default)
  --run                    run the commands
  -h, --help               print this help

Flags after "--" are passed on to main.py.

The train step holds one ssh session per worker until training ends. For a
long run, start this script in a terminal multiplexer (tmux or screen).

Example:
  launch/tpu_pod.sh --name=alexnet-v4 --zone=us-central2-b \
    --workdir=gs://my-bucket/alexnet_jax/run1 --delete --run
EOF
}

log() {
  echo "tpu_pod.sh: $*" >&2
}

die_usage() {
  log "ERROR: $*"
  log "run launch/tpu_pod.sh --help for the options"
  exit 2
}

# Print the arguments as one shell command line, quoting those that need it,
# so that a printed command can be pasted into a shell.
quote_command() {
  local arg quoted=()
  for arg in "$@"; do
    if [[ "$arg" =~ ^[A-Za-z0-9_./=:,@+%^-]+$ ]]; then
      quoted+=("$arg")
    else
      quoted+=("'${arg//\'/\'\\\'\'}'")
    fi
  done
  echo "${quoted[*]}"
}

# Print the command and run it when --run was given.
run_command() {
  echo "+ $(quote_command "$@")"
  if [[ "$mode" == run ]]; then
    "$@"
  fi
}

# Run a shell command line on every worker of the slice.
on_all_workers() {
  run_command gcloud compute tpus tpu-vm ssh "$name" "${gcloud_flags[@]}" \
    --worker=all "--command=$1"
}

name="${TPU_NAME:-}"
zone="${TPU_ZONE:-}"
project="${TPU_PROJECT:-}"
accelerator_type="${TPU_ACCELERATOR_TYPE:-v4-16}"
runtime_version="${TPU_VERSION:-tpu-ubuntu2204-base}"
config="${CONFIG:-configs/ilsvrc2012.py}"
workdir="${WORKDIR:-}"
repo_url="${REPO_URL:-}"
branch="${REPO_BRANCH:-main}"
python_version="${PYTHON_VERSION:-3.11}"
steps="create,copy,install,train"
delete=0
mode=dry-run
main_flags=()

while (($# > 0)); do
  case "$1" in
    --name=*) name="${1#*=}" ;;
    --zone=*) zone="${1#*=}" ;;
    --project=*) project="${1#*=}" ;;
    --accelerator-type=*) accelerator_type="${1#*=}" ;;
    --version=*) runtime_version="${1#*=}" ;;
    --config=*) config="${1#*=}" ;;
    --workdir=*) workdir="${1#*=}" ;;
    --repo-url=*) repo_url="${1#*=}" ;;
    --branch=*) branch="${1#*=}" ;;
    --python-version=*) python_version="${1#*=}" ;;
    --steps=*) steps="${1#*=}" ;;
    --delete) delete=1 ;;
    --dry-run) mode=dry-run ;;
    --run) mode=run ;;
    -h | --help)
      usage
      exit 0
      ;;
    --)
      shift
      main_flags=("$@")
      break
      ;;
    *) die_usage "unknown argument '$1' (options take the form --option=value)" ;;
  esac
  shift
done

if ((delete)); then
  steps="$steps,delete"
fi
[[ -n "$name" ]] || die_usage "--name (or TPU_NAME) is required"
[[ -n "$zone" ]] || die_usage "--zone (or TPU_ZONE) is required"
IFS=, read -r -a step_list <<<"$steps"
for step in "${step_list[@]}"; do
  case "$step" in
    create | copy | install | train | delete) ;;
    *) die_usage "unknown step '$step' in --steps=$steps" ;;
  esac
done
if [[ ",$steps," == *,train,* && -z "$workdir" ]]; then
  if [[ "$mode" == run ]]; then
    die_usage "--workdir (or WORKDIR) is required with --run; use a path" \
      "that every worker can reach, e.g. gs://BUCKET/alexnet_jax/$name"
  fi
  workdir="gs://BUCKET/alexnet_jax/$name"
  log "no --workdir given, printing the placeholder $workdir"
fi
if [[ "$mode" == run ]] && ! command -v gcloud >/dev/null; then
  log "ERROR: gcloud not found; install the Google Cloud CLI or use --dry-run"
  exit 1
fi

repo_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The remote shell expands ~ on each worker.
# shellcheck disable=SC2088
remote_dir='~/alexnet_jax'
gcloud_flags=("--zone=$zone")
if [[ -n "$project" ]]; then
  gcloud_flags+=("--project=$project")
fi

# The jax version of requirements.txt, so that the TPU build matches it.
jax_version="$(sed -n 's/^jax==//p' "$repo_dir/requirements.txt")"
jax_tpu="jax[tpu]${jax_version:+==$jax_version}"

# NOTE: the tests check the printed commands only. No command here has been
# run against Cloud TPU.
step_create() {
  run_command gcloud compute tpus tpu-vm create "$name" "${gcloud_flags[@]}" \
    "--accelerator-type=$accelerator_type" "--version=$runtime_version"
}

step_copy() {
  if [[ -n "$repo_url" ]]; then
    on_all_workers "rm -rf $remote_dir && git clone --depth=1 --branch=$(quote_command "$branch") $(quote_command "$repo_url") $remote_dir"
    return
  fi
  # git archive copies the committed tree only: no virtual environment, no
  # uncommitted changes.
  local archive="${TMPDIR:-/tmp}/alexnet_jax-$name.tar.gz"
  if [[ -n "$(git -C "$repo_dir" status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
    log "WARNING: uncommitted changes in $repo_dir are not copied"
  fi
  run_command git -C "$repo_dir" archive --format=tar.gz "--output=$archive" HEAD
  run_command gcloud compute tpus tpu-vm scp "$archive" \
    "$name:alexnet_jax.tar.gz" "${gcloud_flags[@]}" --worker=all
  on_all_workers "rm -rf $remote_dir && mkdir -p $remote_dir && tar -xzf ~/alexnet_jax.tar.gz -C $remote_dir"
}

step_install() {
  on_all_workers "cd $remote_dir && python3 -m pip install --user uv && ~/.local/bin/uv venv --python=$python_version .venv && ~/.local/bin/uv pip install --python=.venv/bin/python -r requirements.txt \"$jax_tpu\""
}

# jax.distributed.initialize() finds the coordinator, process count and
# process id of a TPU pod slice by itself, so --distributed is enough.
step_train() {
  local flags
  flags="$(quote_command --distributed "--config=$config" "--workdir=$workdir" "${main_flags[@]}")"
  on_all_workers "cd $remote_dir && .venv/bin/python main.py $flags"
}

step_delete() {
  run_command gcloud compute tpus tpu-vm delete "$name" "${gcloud_flags[@]}" --quiet
}

if [[ "$mode" == dry-run ]]; then
  log "dry run: printing the commands; pass --run to run them"
fi
for step in "${step_list[@]}"; do
  echo "# $step"
  "step_$step"
done
