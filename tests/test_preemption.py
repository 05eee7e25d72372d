"""SIGTERM to a training process: finish the step, checkpoint, exit 0, resume."""

import re
import signal
import subprocess
import time

import jax

from alexnet_jax import checkpointing
from alexnet_jax import loop
from alexnet_jax import metrics
from alexnet_jax import sharding
from configs import digits
import multiprocess_util as mp

START_TIMEOUT_S = 240
# launch/slurm.sbatch asks for SIGTERM 120 s before the time limit.
SIGNAL_LEAD_S = 120
STOP_BOUND_S = 30
STOPPED_LINE = re.compile(r'Stopped at step (\d+) after SIGTERM')


def _resume_config(num_train_steps):
  """Returns the config of the preempted run below, with a new step count."""
  config = digits.get_config()
  config.model.width = 0.125
  config.batch_size = 16
  config.eval_batch_size = 32
  config.num_eval_examples = 64
  config.log_every_steps = 1
  config.eval_every_steps = 0
  config.checkpoint_every_steps = 100_000
  config.num_train_steps = num_train_steps
  return config


def test_sigterm_checkpoints_and_resumes(tmp_path):
  workdir = tmp_path / 'run'
  with mp.Processes(tmp_path / 'logs') as procs:
    proc = procs.start(mp.main_command(
        workdir, '--config.num_train_steps=100000',
        '--config.checkpoint_every_steps=100000'), 'train')
    procs.wait_for_line(proc, r'\] step 2: ', START_TIMEOUT_S)
    proc.send_signal(signal.SIGTERM)
    signalled_at = time.monotonic()
    try:
      proc.wait(timeout=SIGNAL_LEAD_S)
    except subprocess.TimeoutExpired:
      pass
    elapsed = time.monotonic() - signalled_at
    log = procs.log_text(proc)

  assert proc.returncode == 0, log[-3000:]
  assert elapsed < STOP_BOUND_S, log[-3000:]
  stopped = STOPPED_LINE.search(log)
  assert stopped, log[-3000:]
  step = int(stopped[1])
  assert step >= 2
  manager = checkpointing.create_manager(str(workdir), 3, async_save=False)
  assert manager.latest_step() == step
  manager.close()
  logged = [r['step'] for r in metrics.read_metrics(workdir)
            if 'train_loss' in r]
  assert logged[-1] == step

  # The next start, here in this process, resumes from that step.
  config = _resume_config(step + 2)
  mesh = sharding.create_mesh(config.mesh, jax.devices()[:1])
  trainer = loop.Trainer(config, str(workdir), mesh)
  assert trainer.step == step
  trainer.run()
  assert trainer.step == step + 2
  resumed = [r['step'] for r in metrics.read_metrics(workdir)
             if 'train_loss' in r]
  assert resumed[len(logged):] == [step + 1, step + 2]
