"""Tests for the launch scripts and for JAX's SLURM cluster detection.

The SLURM test runs only when SLURM_CONF points at a running cluster, for
example the one-node cluster that .ci/slurm_up.sh starts. Otherwise it is
skipped.
"""

import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import time

import pytest

REPO_DIR = pathlib.Path(__file__).resolve().parent.parent
LAUNCH_SCRIPTS = ['launch/slurm.sbatch', 'launch/tpu_pod.sh', 'launch/local.sh']
SHELL_SCRIPTS = LAUNCH_SCRIPTS + ['.ci/slurm_up.sh', '.ci/slurm_down.sh']
TPU_POD = str(REPO_DIR / 'launch' / 'tpu_pod.sh')
SLURM_JOB_TIMEOUT_S = 180
SLURM_ACTIVE_STATES = ('PENDING', 'CONFIGURING', 'RUNNING', 'COMPLETING')


@pytest.mark.parametrize('script', SHELL_SCRIPTS)
def test_script_syntax(script):
  result = subprocess.run(
      ['bash', '-n', script], cwd=REPO_DIR, capture_output=True, text=True,
      check=False)
  assert result.returncode == 0, result.stderr


@pytest.mark.parametrize('script', SHELL_SCRIPTS)
def test_script_shellcheck(script):
  if shutil.which('shellcheck') is None:
    pytest.skip('shellcheck is not installed (apt-get install shellcheck)')
  result = subprocess.run(
      ['shellcheck', script], cwd=REPO_DIR, capture_output=True, text=True,
      check=False)
  assert result.returncode == 0, result.stdout


def test_local_rejects_bad_count():
  result = subprocess.run(
      ['launch/local.sh', 'two'], cwd=REPO_DIR, capture_output=True,
      text=True, check=False)
  assert result.returncode == 2
  assert "got 'two'" in result.stderr


def test_local_help():
  result = subprocess.run(
      ['launch/local.sh', '--help'], cwd=REPO_DIR, capture_output=True,
      text=True, check=False)
  assert result.returncode == 0
  assert 'Usage: launch/local.sh N' in result.stdout


@pytest.fixture(name='guarded_env')
def fixture_guarded_env(tmp_path):
  """Return an environment whose PATH starts with a gcloud that records calls.

  The recording gcloud fails, so a dry run that calls gcloud by mistake
  shows up both as a record and, most likely, as an error.
  """
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  gcloud = bin_dir / 'gcloud'
  gcloud.write_text(
      '#!/bin/sh\necho "$@" >> "$GCLOUD_CALLS"\nexit 1\n', encoding='utf-8')
  gcloud.chmod(0o755)
  env = dict(os.environ)
  env['PATH'] = f'{bin_dir}{os.pathsep}{env["PATH"]}'
  env['GCLOUD_CALLS'] = str(tmp_path / 'gcloud_calls')
  env['TMPDIR'] = str(tmp_path / 'tmp')
  (tmp_path / 'tmp').mkdir()
  for name in ('TPU_NAME', 'TPU_ZONE', 'TPU_PROJECT', 'TPU_ACCELERATOR_TYPE',
               'TPU_VERSION', 'CONFIG', 'WORKDIR', 'REPO_URL', 'REPO_BRANCH'):
    env.pop(name, None)
  return env


def _run_tpu_pod(env, *args):
  return subprocess.run(
      [TPU_POD, *args], cwd=REPO_DIR, env=env, capture_output=True,
      text=True, check=False, timeout=60)


def _printed_commands(stdout):
  """Parse the commands that a dry run prints.

  Args:
    stdout: the output of launch/tpu_pod.sh.

  Returns:
    One argv list per printed command, in order, parsed by shell rules.
  """
  return [shlex.split(line[2:]) for line in stdout.splitlines()
          if line.startswith('+ ')]


def _index_of(commands, prefix):
  """Return the index of the first command that starts with prefix."""
  for index, argv in enumerate(commands):
    if argv[:len(prefix)] == prefix:
      return index
  raise AssertionError(f'no command starts with {prefix}: {commands}')


def _remote_commands(commands):
  """Return the --command= values of the ssh commands, in order."""
  remote = []
  for argv in commands:
    if argv[:5] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh']:
      assert '--worker=all' in argv, argv
      values = [a for a in argv if a.startswith('--command=')]
      assert len(values) == 1, argv
      remote.append(values[0][len('--command='):])
  return remote


def test_tpu_pod_dry_run_sequence(guarded_env, tmp_path):
  result = _run_tpu_pod(
      guarded_env, '--dry-run', '--name=NAME', '--zone=ZONE',
      '--config=configs/ilsvrc2012.py', '--delete', '--',
      '--config.num_epochs=2', '--config.note=a b')
  assert result.returncode == 0, result.stderr
  commands = _printed_commands(result.stdout)

  create = commands[_index_of(
      commands, ['gcloud', 'compute', 'tpus', 'tpu-vm', 'create'])]
  assert create[5] == 'NAME'
  assert '--zone=ZONE' in create
  assert '--accelerator-type=v4-16' in create
  assert '--version=tpu-ubuntu2204-base' in create

  archive_index = _index_of(commands, ['git', '-C', str(REPO_DIR), 'archive'])
  scp_index = _index_of(commands, ['gcloud', 'compute', 'tpus', 'tpu-vm', 'scp'])
  scp = commands[scp_index]
  assert '--worker=all' in scp
  assert 'NAME:alexnet_jax.tar.gz' in scp
  assert archive_index < scp_index

  remote = _remote_commands(commands)
  assert len(remote) == 3
  unpack, install, train = remote
  assert 'tar -xzf ~/alexnet_jax.tar.gz' in unpack
  assert 'pip install' in install
  assert '-r requirements.txt' in install
  train_argv = shlex.split(train)
  main_index = train_argv.index('main.py')
  assert train_argv[main_index + 1:] == [
      '--distributed', '--config=configs/ilsvrc2012.py',
      '--workdir=gs://BUCKET/alexnet_jax/NAME', '--config.num_epochs=2',
      '--config.note=a b']

  delete_index = _index_of(
      commands, ['gcloud', 'compute', 'tpus', 'tpu-vm', 'delete'])
  delete = commands[delete_index]
  assert delete[5] == 'NAME'
  assert '--zone=ZONE' in delete
  assert delete_index == len(commands) - 1
  assert commands.index(create) < scp_index

  assert not (tmp_path / 'gcloud_calls').exists()
  assert not list((tmp_path / 'tmp').iterdir())


def test_tpu_pod_default_keeps_slice(guarded_env, tmp_path):
  result = _run_tpu_pod(
      guarded_env, '--name=NAME', '--zone=ZONE', '--project=PROJECT',
      '--accelerator-type=v4-32', '--workdir=gs://bucket/run1')
  assert result.returncode == 0, result.stderr
  assert 'dry run' in result.stderr
  commands = _printed_commands(result.stdout)
  deletes = [argv for argv in commands if argv[:5] == [
      'gcloud', 'compute', 'tpus', 'tpu-vm', 'delete']]
  assert not deletes
  gcloud_commands = [argv for argv in commands if argv[0] == 'gcloud']
  assert all('--project=PROJECT' in argv for argv in gcloud_commands)
  create = gcloud_commands[0]
  assert '--accelerator-type=v4-32' in create
  assert '--workdir=gs://bucket/run1' in _remote_commands(commands)[-1]
  assert not (tmp_path / 'gcloud_calls').exists()


def test_tpu_pod_clone_repo(guarded_env):
  result = _run_tpu_pod(
      guarded_env, '--name=NAME', '--zone=ZONE', '--steps=copy',
      '--repo-url=/srv/git/alexnet_jax.git', '--branch=dev')
  assert result.returncode == 0, result.stderr
  commands = _printed_commands(result.stdout)
  assert len(commands) == 1
  (clone,) = _remote_commands(commands)
  assert ('git clone --depth=1 --branch=dev /srv/git/alexnet_jax.git'
          in clone)


@pytest.mark.parametrize('args, message', [
    (['--zone=ZONE'], '--name (or TPU_NAME) is required'),
    (['--name=NAME'], '--zone (or TPU_ZONE) is required'),
    (['--name=NAME', '--zone=ZONE', '--run'], '--workdir (or WORKDIR)'),
    (['--name=NAME', '--zone=ZONE', '--steps=create,boot'], "step 'boot'"),
    (['--name', 'NAME'], "unknown argument '--name'"),
])
def test_tpu_pod_rejects_invalid(guarded_env, tmp_path, args, message):
  result = _run_tpu_pod(guarded_env, *args)
  assert result.returncode == 2
  assert message in result.stderr
  assert not result.stdout
  assert not (tmp_path / 'gcloud_calls').exists()


def _slurm_job_state(job_id):
  """Return the JobState that scontrol reports for job_id."""
  output = subprocess.run(
      ['scontrol', 'show', 'job', '--oneliner', job_id], capture_output=True,
      text=True, check=True, timeout=30).stdout
  for field in output.split():
    if field.startswith('JobState='):
      return field[len('JobState='):]
  raise AssertionError(f'no JobState in scontrol output: {output}')


@pytest.mark.skipif(
    'SLURM_CONF' not in os.environ,
    reason='no SLURM cluster: SLURM_CONF is unset (see .ci/slurm_up.sh)')
def test_slurm_detects_processes(tmp_path):
  log_file = tmp_path / 'probe.out'
  submit = subprocess.run(
      ['sbatch', '--parsable', '--job-name=slurm_probe', '--ntasks=2',
       '--time=5', f'--output={log_file}',
       f'--wrap=srun {shlex.quote(sys.executable)} tests/slurm_probe.py'],
      cwd=REPO_DIR, capture_output=True, text=True, check=True, timeout=30)
  job_id = submit.stdout.strip().split(';')[0]

  deadline = time.monotonic() + SLURM_JOB_TIMEOUT_S
  state = _slurm_job_state(job_id)
  while state in SLURM_ACTIVE_STATES and time.monotonic() < deadline:
    time.sleep(1)
    state = _slurm_job_state(job_id)
  if state in SLURM_ACTIVE_STATES:
    subprocess.run(['scancel', job_id], check=False, timeout=30)
  log = log_file.read_text(encoding='utf-8') if log_file.exists() else ''
  assert state == 'COMPLETED', f'job {job_id} is {state}, log:\n{log}'

  reports = sorted(line for line in log.splitlines()
                   if line.startswith('slurm_probe:'))
  assert len(reports) == 2, log
  for process_index, report in enumerate(reports):
    fields = dict(item.split('=', 1) for item in report.split()[1:5])
    assert fields['process_index'] == str(process_index), report
    assert fields['process_count'] == '2', report
    assert fields['local_devices'] == '2', report
    assert fields['global_devices'] == '4', report
    assert report.endswith('gathered=[0, 1]'), report
