"""Training across 2 real JAX processes on 127.0.0.1, and a process that dies.

Each process has 2 forced CPU devices and gloo collectives, so the mesh of
data=2 x model=2 spans both processes: process 0 holds the first `data` row
(both columns) and process 1 the second.
"""

import re
import signal
import subprocess
import time

import jax
import numpy as np
import orbax.checkpoint as ocp

from alexnet_jax import input_pipeline
from alexnet_jax import loop
from alexnet_jax import metrics
from alexnet_jax import sharding
from configs import digits
import multiprocess_util as mp

STEPS = 4
MESH_FLAGS = ('--config.mesh.data=2', '--config.mesh.model=2',
              '--config.input.train_shards=2')
RUN_TIMEOUT_S = 300
HEARTBEAT_TIMEOUT_S = 20
READS_LINE = re.compile(r'Step (\d+): process (\d+) reads examples \[([\d, ]*)\]')


def _tiny_config(**overrides):
  """Returns the digits config with the same overrides as `mp.TINY_DIGITS`."""
  config = digits.get_config()
  config.model.width = 0.125
  config.batch_size = 16
  config.eval_batch_size = 32
  config.num_eval_examples = 64
  config.log_every_steps = 1
  config.eval_every_steps = 0
  config.mesh.data, config.mesh.model = 2, 2
  config.input.train_shards = 2
  for key, value in overrides.items():
    setattr(config, key, value)
  return config


def _train_losses(workdir):
  return {r['step']: r['train_loss'] for r in metrics.read_metrics(workdir)
          if 'train_loss' in r}


def _read_examples(log_text):
  """Returns {step: example indices} from a process's debug log."""
  return {int(m[1]): [int(i) for i in m[3].split(', ')]
          for m in READS_LINE.finditer(log_text)}


def _single_process_examples(config, steps):
  dataset, _ = input_pipeline.create_train_dataset(config, config.batch_size,
                                                   0, 1)
  batches = dataset.take(steps).as_numpy_iterator()
  return {step: batch['index'].tolist()
          for step, batch in enumerate(batches, start=1)}


def test_two_processes_match_one(tmp_path):
  two_dir, one_dir = tmp_path / 'two', tmp_path / 'one'
  config = _tiny_config(num_train_steps=STEPS, checkpoint_every_steps=STEPS)
  with mp.Processes(tmp_path / 'logs') as procs:
    pair = procs.start_pair(two_dir, mp.free_port(),
                            f'--config.num_train_steps={STEPS}',
                            f'--config.checkpoint_every_steps={STEPS}',
                            '--verbosity=1', *MESH_FLAGS)
    # Meanwhile the single-process run trains here, on the 4 devices that
    # conftest.py forces.
    mesh = sharding.create_mesh(config.mesh)
    loop.train_and_evaluate(config, str(one_dir), mesh)
    procs.wait_all(RUN_TIMEOUT_S)
    logs = [procs.log_text(proc) for proc in pair]

  for proc, log in zip(pair, logs):
    assert proc.returncode == 0, log[-3000:]
  for process_id, log in enumerate(logs):
    assert f'Process {process_id} of 2' in log, log[-3000:]
    assert "Mesh {'data': 2, 'model': 2}" in log, log[-3000:]
  assert not mp.STEP_LINE.search(logs[1])

  two, one = _train_losses(two_dir), _train_losses(one_dir)
  assert sorted(two) == list(range(1, STEPS + 1))
  np.testing.assert_allclose([two[s] for s in sorted(two)],
                             [one[s] for s in sorted(two)], rtol=0, atol=1e-5)

  reads = [_read_examples(log) for log in logs]
  expected = _single_process_examples(config, STEPS)
  for step in range(1, STEPS + 1):
    assert not set(reads[0][step]) & set(reads[1][step]), step
    assert reads[0][step] + reads[1][step] == expected[step], step

  # Restore the 2-process checkpoint in this single process, on the same mesh.
  restored = loop.Trainer(config, str(two_dir), mesh)
  reference = loop.Trainer(config, str(one_dir), mesh)
  restored.close()
  reference.close()
  assert restored.step == STEPS
  # Read it again onto one device, an independent layout, to compare bits.
  one_device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=one_device),
      restored.state)
  raw = ocp.StandardCheckpointer().restore(
      two_dir / 'checkpoints' / str(STEPS) / 'default', target)
  jax.tree.map(np.testing.assert_array_equal,
               jax.device_get(restored.state.params),
               jax.device_get(raw.params))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5),
               jax.device_get(restored.state.params),
               jax.device_get(reference.state.params))


def test_survivor_exits_when_peer_dies(tmp_path):
  with mp.Processes(tmp_path / 'logs') as procs:
    first, second = procs.start_pair(
        tmp_path / 'run', mp.free_port(), '--config.num_train_steps=100000',
        f'--heartbeat_timeout={HEARTBEAT_TIMEOUT_S}', *MESH_FLAGS)
    procs.wait_for_line(first, mp.STEP_LINE.pattern, RUN_TIMEOUT_S)
    second.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    try:
      first.wait(timeout=HEARTBEAT_TIMEOUT_S + 40)
    except subprocess.TimeoutExpired:
      pass
    elapsed = time.monotonic() - killed_at
    log = procs.log_text(first)

  assert first.returncode not in (None, 0), log[-3000:]
  assert elapsed < HEARTBEAT_TIMEOUT_S + 40, elapsed
  # The message of jax 0.10's coordination service client.
  assert 'distributed service detected fatal errors' in log, log[-3000:]
