"""The driver: train with periodic evaluation and checkpoints, or evaluate a checkpoint."""

import os
import sys
import time

import jax
import numpy as np
from absl import logging

from alexnet_jax import checkpointing
from alexnet_jax import input_pipeline
from alexnet_jax import metrics as metrics_lib
from alexnet_jax import profiling
from alexnet_jax import schedules
from alexnet_jax import sharding
from alexnet_jax import train

CONFIG_FILE = 'config.json'

def _progress_bar(total, initial):
  """Returns a tqdm bar on an interactive terminal of process 0, else None."""
  if jax.process_index() != 0 or not sys.stderr.isatty():
    return None
  import tqdm  # pylint: disable=g-import-not-at-top
  return tqdm.tqdm(total=total, initial=initial, unit='step', dynamic_ncols=True)


class Trainer:
  """Holds one run's mesh, state, jitted steps, checkpoints and metric writer."""

  def __init__(self, config, workdir, mesh):
    self.config, self.workdir, self.mesh = config, workdir, mesh
    sharding.check_batch_size(config.batch_size, mesh)
    sharding.check_batch_size(config.eval_batch_size, mesh, 'eval_batch_size')
    self.rows = sharding.process_batch_rows(mesh, config.batch_size)
    input_pipeline.train_shard_range(config, self.rows, jax.process_count())
    self.local_batch = self.rows[1] - self.rows[0]
    source = input_pipeline.create_source(config, True, jax.process_index(),
                                          jax.process_count())
    self.steps_per_epoch, self.total_steps = train.total_train_steps(
        config, source.total_examples)
    self.learning_rate_fn = train.create_learning_rate_fn(
        config, self.steps_per_epoch)
    schedules.check_config(config)
    self.optimizer = train.create_optimizer(config, self.learning_rate_fn)
    self.manager = checkpointing.create_manager(workdir,
                                                config.keep_checkpoints)
    with jax.set_mesh(mesh):
      self.state, self.shardings, self.graphdef = train.create_train_state(
          config, mesh, self.optimizer)
      abstract = checkpointing.abstract_with_shardings(
          jax.eval_shape(lambda s: s, self.state), self.shardings)
      restored = checkpointing.restore_latest(self.manager, abstract)
      if restored is not None:
        self.state = restored
      self.p_train_step = train.jit_train_step(
          config, mesh, self.shardings, self.graphdef, self.optimizer,
          self.learning_rate_fn)
      self.p_eval_step = train.jit_eval_step(mesh, self.shardings.params,
                                             self.graphdef)
      self.p_plateau_update = schedules.jit_plateau_update(
          config, sharding.replicated(mesh))
    self.writer = metrics_lib.MetricWriter(workdir)

  @property
  def step(self) -> int:
    return int(jax.device_get(self.state.step))

  def save(self, step):
    checkpointing.save(self.manager, step, self.state)

  def evaluate(self, step):
    with jax.set_mesh(self.mesh):
      results = train.evaluate(self.p_eval_step, self.state.params,
                               self.config, self.mesh)
    self.writer.write(step, results)
    return results

  def update_schedule(self, step, results) -> bool:
    """Feeds an evaluation to the plateau schedule; returns whether to stop."""
    if self.config.schedule != 'plateau':
      return False
    error = float(results['eval_top1_error'])
    before = jax.device_get(self.state.schedule)
    with jax.set_mesh(self.mesh):
      schedule = self.p_plateau_update(self.state.schedule, error)
    self.state = self.state.replace(schedule=schedule)
    event = schedules.describe_update(before, jax.device_get(schedule))
    schedules.log_event(event, step, error, self.config)
    if event.reduced or event.stopped:
      self.writer.write(step, {'plateau_reductions': event.reductions,
                               'plateau_error': error,
                               'plateau_stop': float(event.stopped)})
    return event.stopped

  def _log_train(self, step, history, elapsed, steps):
    check = list(zip(history['step'], history['train_loss']))
    train.check_finite(check)
    summary = train.summarize({k: v for k, v in history.items()
                               if k != 'step'})
    summary['images_per_second'] = train.images_per_second(
        self.config.batch_size, steps, elapsed)
    self.writer.write(step, summary)
    return summary

  def _nothing_to_train(self, start) -> bool:
    """Returns True, and logs why, when a resumed run has no step left."""
    if start >= self.total_steps:
      logging.info('The workdir is already trained to step %d; nothing to '
                   'train. Run --mode=eval for its metrics, or raise '
                   'num_train_steps to train further.', start)
      return True
    if bool(jax.device_get(self.state.schedule['stop'])):
      logging.info('The plateau schedule already ended this run at step %d.',
                   start)
      return True
    return False

  def _train_step(self, step, batches, tracer, first):
    """Runs one step on the next batch and returns its metrics on the host."""
    batch, indices = next(batches)
    if logging.level_debug():
      logging.debug('Step %d: process %d reads examples %s.', step,
                    jax.process_index(), indices.tolist())
    tracer.before_step(step)
    compile_start = time.perf_counter()
    self.state, step_metrics = self.p_train_step(self.state, batch)
    tracer.after_step(step, step_metrics)
    if first:
      jax.block_until_ready(step_metrics)
      logging.info('First train step compiled and ran in %.1f s.',
                   time.perf_counter() - compile_start)
    return jax.device_get(step_metrics)

  def _evaluate_and_save(self, step, history, last):
    """Evaluates and checkpoints when due.

    Returns:
      (eval metrics or None, whether the plateau schedule ended training).
    """
    config, results, plateau_stop = self.config, None, False
    if (config.eval_every_steps > 0 and step % config.eval_every_steps == 0
        ) or step == self.total_steps:
      results = self.evaluate(step)
      plateau_stop = self.update_schedule(step, results)
    if step % config.checkpoint_every_steps == 0 or last or plateau_stop:
      if history:
        train.check_finite(list(zip(history['step'], history['train_loss'])))
      self.save(step)
    return results, plateau_stop

  def run(self):
    """Trains to `total_steps`, evaluating and checkpointing on schedule.

    Returns:
      The last train and eval metrics.
    """
    config, start = self.config, self.step
    logging.info('Training steps %d to %d (%d per epoch), global batch %d.',
                 start, self.total_steps, self.steps_per_epoch,
                 config.batch_size)
    if self._nothing_to_train(start):
      self.close()
      return {}, {}
    dataset, _ = input_pipeline.create_train_dataset(
        config, self.local_batch, jax.process_index(), jax.process_count(),
        start_step=start, rows=self.rows)
    batches = input_pipeline.prefetch_to_mesh(dataset.as_numpy_iterator(),
                                              self.mesh)
    history, last_train, last_eval = {}, {}, {}
    bar = _progress_bar(self.total_steps, start)
    tracer = profiling.StepTracer(self.workdir, config.profile_steps,
                                  start + 1)
    window_start, window_steps = time.perf_counter(), 0
    with train.PreemptionFlag() as preempted, jax.set_mesh(self.mesh):
      for step in range(start + 1, self.total_steps + 1):
        step_metrics = self._train_step(step, batches, tracer,
                                        step == start + 1)
        if step == start + 1:
          window_start = time.perf_counter()
        else:
          window_steps += 1
        for key, value in step_metrics.items():
          history.setdefault(key, []).append(float(value))
        history.setdefault('step', []).append(step)
        if bar is not None:
          bar.update(1)
        stop = preempted.agreed()
        last = step == self.total_steps or stop
        if step % config.log_every_steps == 0 or last:
          last_train = self._log_train(step, history,
                                       time.perf_counter() - window_start,
                                       max(window_steps, 1))
          history, window_start, window_steps = {}, time.perf_counter(), 0
        results, plateau_stop = self._evaluate_and_save(step, history, last)
        last_eval = results or last_eval
        if plateau_stop:
          break
        if stop:
          logging.warning('Stopped at step %d after SIGTERM; the checkpoint '
                          'is saved and the next start resumes from it.', step)
          break
    tracer.finish(self.state)
    if bar is not None:
      bar.close()
    self.close()
    return last_train, last_eval

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()
    self.writer.close()


def train_and_evaluate(config, workdir, mesh):
  """Trains, evaluates and checkpoints in `workdir`; returns the final metrics."""
  trainer = Trainer(config, workdir, mesh)
  write_config(config, workdir)
  try:
    last_train, last_eval = trainer.run()
  except BaseException:
    trainer.manager.wait_until_finished()
    raise
  return {**last_train, **last_eval, 'step': trainer.step}


def write_config(config, workdir):
  """Writes the run's config to `workdir/config.json` for the tools and reports."""
  if jax.process_index() != 0:
    return
  with open(os.path.join(workdir, CONFIG_FILE), 'w', encoding='utf-8') as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))


def evaluate_checkpoint(config, workdir, mesh):
  """Evaluates the latest checkpoint in `workdir` on the evaluation split."""
  trainer = Trainer(config, workdir, mesh)
  step = trainer.step
  if step == 0 and trainer.manager.latest_step() is None:
    trainer.close()
    raise FileNotFoundError(
        f'No checkpoint in {os.path.join(workdir, "checkpoints")}. Train '
        'first with --mode=train and the same --workdir.')
  results = trainer.evaluate(step)
  trainer.close()
  return {**{k: float(np.asarray(v)) for k, v in results.items()},
          'step': step}


def format_final_line(results: dict, workdir: str) -> str:
  """Returns the one-line report printed at the end of a run."""
  names = ('step', 'train_loss', 'eval_loss', 'eval_top1_error',
           'eval_top5_error')
  parts = [f'{name}={results[name]:.4g}' for name in names if name in results]
  if 'eval_top1_error' in results:
    parts.append(f'eval_top1_accuracy={1 - results["eval_top1_error"]:.4f}')
  return (' '.join(parts) + f' | checkpoints: {os.path.join(workdir, "checkpoints")}'
          f' | metrics and TensorBoard summaries: {workdir}')
