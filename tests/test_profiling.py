"""A training run with config.profile_steps writes a TensorBoard profile trace."""

import glob
import os

import jax

from alexnet_jax import loop
from alexnet_jax import profiling
from alexnet_jax import sharding
from configs import digits


def _trace_files(workdir):
  return glob.glob(os.path.join(workdir, 'plugins', 'profile', '*',
                                '*.xplane.pb'))


def test_training_writes_trace(tmp_path):
  config = digits.get_config()
  config.model.width = 0.125
  config.batch_size = 16
  config.eval_batch_size = 64
  config.num_eval_examples = 64
  config.num_train_steps = 4
  config.eval_every_steps = -1
  config.profile_steps = 2
  mesh = sharding.create_mesh(config.mesh, jax.devices()[:1])
  loop.train_and_evaluate(config, str(tmp_path), mesh)
  assert len(_trace_files(str(tmp_path))) == 1


def test_zero_steps_write_no_trace(tmp_path):
  tracer = profiling.StepTracer(str(tmp_path), 0, first_step=1)
  for step in range(1, 4):
    tracer.before_step(step)
    tracer.after_step(step, None)
  tracer.finish()
  assert not _trace_files(str(tmp_path))


def test_trace_stops_after_last_step(tmp_path):
  tracer = profiling.StepTracer(str(tmp_path), 1, first_step=1)
  square = jax.jit(lambda x: x * x)
  traced = []
  for step in range(1, 4):
    tracer.before_step(step)
    if tracer.active:
      traced.append(step)
    tracer.after_step(step, square(float(step)))
  assert traced == [2]
  assert not tracer.active
  assert len(_trace_files(str(tmp_path))) == 1
