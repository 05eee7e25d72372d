"""Training through launch/slurm.sbatch on a real SLURM cluster.

Runs only when SLURM_CONF points at a running cluster, such as the one-node
cluster that .ci/slurm_up.sh starts. The job has 2 tasks of 2 CPU devices
each, and main.py --distributed leaves jax.distributed.initialize() to find
the process count and ids in the SLURM_* variables.
"""

import os
import subprocess
import time

import jax
import pytest

from alexnet_jax import loop
from alexnet_jax import metrics
from alexnet_jax import sharding
from configs import digits
import multiprocess_util as mp

STEPS = 4
# Covers the wait for a busy node, two process starts and the run.
JOB_TIMEOUT_S = 420
ACTIVE_STATES = ('PENDING', 'CONFIGURING', 'RUNNING', 'COMPLETING')


def _job_state(job_id):
  output = subprocess.run(
      ['scontrol', 'show', 'job', '--oneliner', job_id], capture_output=True,
      text=True, check=True, timeout=30).stdout
  for field in output.split():
    if field.startswith('JobState='):
      return field[len('JobState='):]
  raise AssertionError(f'No JobState in scontrol output: {output}')


def _wait_for_job(job_id):
  """Waits until the job leaves the queue; cancels it after JOB_TIMEOUT_S."""
  deadline = time.monotonic() + JOB_TIMEOUT_S
  state = _job_state(job_id)
  while state in ACTIVE_STATES and time.monotonic() < deadline:
    time.sleep(2)
    state = _job_state(job_id)
  if state in ACTIVE_STATES:
    subprocess.run(['scancel', job_id], check=False, timeout=30)
  return state


@pytest.mark.skipif(
    'SLURM_CONF' not in os.environ,
    reason='no SLURM cluster: SLURM_CONF is unset (start one with '
    '.ci/slurm_up.sh and source the slurm.env it writes)')
def test_sbatch_trains_and_checkpoints(tmp_path):
  workdir, log_file = tmp_path / 'run', tmp_path / 'job.out'
  env = mp.subprocess_env()
  env.update(
      PYTHON=mp.sys.executable, HOST_DEVICE_COUNT='2',
      CONFIG='configs/digits.py', WORKDIR=str(workdir),
      EXTRA_ARGS=' '.join(mp.TINY_DIGITS[1:] + (
          f'--config.num_train_steps={STEPS}',
          f'--config.checkpoint_every_steps={STEPS}',
          '--config.mesh.data=2', '--config.mesh.model=2',
          '--config.input.train_shards=2')))
  submit = subprocess.run(
      ['sbatch', '--parsable', '--job-name=alexnet_test', '--ntasks=2',
       '--time=10', f'--output={log_file}', 'launch/slurm.sbatch'],
      cwd=mp.REPO_DIR, env=env, capture_output=True, text=True, check=True,
      timeout=30)
  job_id = submit.stdout.strip().split(';')[0]
  state = _wait_for_job(job_id)
  log = log_file.read_text(errors='replace') if log_file.exists() else ''

  assert state == 'COMPLETED', f'job {job_id} is {state}, log:\n{log[-4000:]}'
  assert 'Process 0 of 2' in log, log[-4000:]
  assert 'Process 1 of 2' in log, log[-4000:]
  assert "Mesh {'data': 2, 'model': 2}" in log, log[-4000:]
  logged = [r['step'] for r in metrics.read_metrics(workdir)
            if 'train_loss' in r]
  assert logged == list(range(1, STEPS + 1))

  config = digits.get_config()
  config.model.width = 0.125
  config.batch_size, config.eval_batch_size = 16, 32
  config.mesh.data, config.mesh.model = 2, 2
  config.input.train_shards = 2
  config.num_train_steps = STEPS
  trainer = loop.Trainer(config, str(workdir),
                         sharding.create_mesh(config.mesh, jax.devices()))
  trainer.close()
  assert trainer.step == STEPS
