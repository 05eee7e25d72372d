"""Traces a few train steps with `jax.profiler` for TensorBoard's profile plugin."""

import jax
from absl import logging


class StepTracer:
  """Traces `num_steps` steps, starting after the first (compiling) step.

  The trace goes to `workdir/plugins/profile/<run>/`, where TensorBoard's
  profile plugin finds it. Only process 0 traces.
  """

  def __init__(self, workdir: str, num_steps: int, first_step: int):
    if num_steps < 0:
      raise ValueError(f'profile_steps={num_steps} must be 0 (no trace) or a '
                       'positive number of steps.')
    self.workdir = workdir
    self.start = first_step + 1
    self.stop = self.start + num_steps
    self.enabled = num_steps > 0 and jax.process_index() == 0
    self.active = False

  def before_step(self, step: int):
    if self.enabled and step == self.start:
      logging.info('Tracing steps %d to %d into %s.', self.start,
                   self.stop - 1, self.workdir)
      jax.profiler.start_trace(self.workdir)
      self.active = True

  def after_step(self, step: int, outputs):
    """Stops the trace once the last traced step's `outputs` are computed."""
    if self.active and step == self.stop - 1:
      self.finish(outputs)

  def finish(self, outputs=None):
    if self.active:
      jax.block_until_ready(outputs)
      jax.profiler.stop_trace()
      self.active = False
      logging.info('Wrote the profile trace to %s/plugins/profile.',
                   self.workdir)
