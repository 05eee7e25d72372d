"""Training and evaluation steps: the train state, the optimizer, and jitted steps with explicit shardings."""

import functools
import math
import signal
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx
from jax.experimental import multihost_utils

from alexnet_jax import checkpointing
from alexnet_jax import input_pipeline
from alexnet_jax import metrics as metrics_lib
from alexnet_jax import models
from alexnet_jax import param_groups
from alexnet_jax import schedules
from alexnet_jax import sharding


@flax.struct.dataclass
class TrainState:
  """Everything a run checkpoints: the step, parameters, optimizer and schedule state."""

  step: jax.Array
  params: Any  # Pure dict of arrays, as `nnx.to_pure_dict` returns.
  opt_state: Any
  schedule: Any = None  # `schedules.init_schedule_state`: plateau scale, reductions, stop.


def create_learning_rate_fn(config, steps_per_epoch: int):
  """Returns the base learning rate as a function of the step (see `schedules`)."""
  return schedules.create_learning_rate_fn(config, steps_per_epoch)


def create_optimizer(config, learning_rate_fn=None):
  """Builds the paper's SGD with momentum and coupled weight decay.

  The learning rate is an injected hyperparameter that `train_step` sets
  every step from the schedule. `optimizer.param_groups` picks the decay and
  learning-rate multiplier of each parameter by its path (see
  `param_groups.py`). `optimizer.momentum_form` picks where the learning rate
  enters (see `param_groups.sgd`).
  """
  del learning_rate_fn  # The step sets the rate; kept for callers' signature.
  return param_groups.create_optimizer(config)


def model_graph(config, seed=None):
  """Returns the model's NNX graph definition and its abstract parameters."""
  abstract = nnx.eval_shape(
      lambda: models.create_model(config.model, config.seed if seed is None
                                  else seed))
  graphdef, _ = nnx.split(abstract)
  return graphdef, abstract


def state_shardings(mesh, abstract_model, abstract_state):
  """Returns the sharding of every leaf of the train state.

  Parameters, and the optimizer slots that mirror them, follow the model's
  column sharding. Everything else is replicated.
  """
  param_sharding = sharding.param_shardings(mesh, abstract_model)
  params_structure = jax.tree.structure(abstract_state.params)

  def opt_sharding(subtree):
    if jax.tree.structure(subtree) == params_structure:
      return param_sharding
    return jax.tree.map(lambda _: sharding.replicated(mesh), subtree)

  opt = jax.tree.map(
      opt_sharding, abstract_state.opt_state,
      is_leaf=lambda x: jax.tree.structure(x) == params_structure)
  schedule = jax.tree.map(lambda _: sharding.replicated(mesh),
                          abstract_state.schedule)
  return TrainState(step=sharding.replicated(mesh), params=param_sharding,
                    opt_state=opt, schedule=schedule)


def create_train_state(config, mesh, optimizer):
  """Initialises the train state directly into its shardings on `mesh`.

  Returns:
    (state, shardings, graphdef).
  """
  graphdef, abstract_model = model_graph(config)
  models.check_mesh(abstract_model.geometry, mesh)

  def init():
    model = models.create_model(config.model, config.seed)
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=optimizer.init(params),
                      schedule=schedules.init_schedule_state(config))

  abstract_state = jax.eval_shape(init)
  shardings = state_shardings(mesh, abstract_model, abstract_state)
  state = jax.jit(init, out_shardings=shardings)()
  return state, shardings, graphdef


def _forward(graphdef, params, images, dropout_masks=None):
  model = nnx.merge(graphdef, params)
  return model(images, dropout_masks=dropout_masks)


def train_step(state, batch, *, graphdef, optimizer, learning_rate_fn,
               dropout_rate, seed):
  """Runs one SGD step on a global batch and returns the new state and metrics."""
  geom = nnx.merge(graphdef, state.params).geometry
  key = jax.random.fold_in(jax.random.key(seed), state.step)
  images = input_pipeline.model_input(batch)
  masks = models.dropout_masks(key, images.shape[0], geom,
                               dropout_rate) if dropout_rate > 0 else None

  def loss_fn(params):
    logits = _forward(graphdef, params, images, masks)
    loss = jnp.mean(metrics_lib.cross_entropy(logits, batch['label']))
    return loss, logits

  (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params)
  lr = schedules.learning_rate(learning_rate_fn, state.step, state.schedule)
  opt_state = param_groups.set_learning_rate(state.opt_state, lr)
  updates, opt_state = optimizer.update(grads, opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new_state = state.replace(step=state.step + 1, params=params,
                            opt_state=opt_state)
  step_metrics = {
      'train_loss': loss,
      'train_top1_error': 1 - jnp.mean(
          metrics_lib.topk_correct(logits, batch['label'], 1)),
      'train_top5_error': 1 - jnp.mean(
          metrics_lib.topk_correct(logits, batch['label'], 5)),
      'learning_rate': lr,
  }
  return new_state, step_metrics


def crop_averaged_logits(graphdef, params, images):
  """Returns logits of [batch, H, W, 3] images, or of the mean over crops.

  For [batch, crops, H, W, 3] images this is the log of the softmax outputs
  averaged over each image's crops, as in the ten-crop test of Krizhevsky
  et al. (2012). Its softmax is that average, so loss and top-k read it like
  logits.
  """
  if images.ndim == 4:
    return _forward(graphdef, params, images)
  batch, crops = images.shape[:2]
  logits = _forward(graphdef, params, images.reshape((-1,) + images.shape[2:]))
  probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  return jnp.log(jnp.mean(probs.reshape(batch, crops, -1), axis=1))


def eval_step(params, batch, *, graphdef):
  """Returns the masked sums of loss, top-1 and top-5 hits, and the example count."""
  logits = crop_averaged_logits(graphdef, params,
                                input_pipeline.model_input(batch))
  mask = batch['mask']
  return {
      'loss': jnp.sum(metrics_lib.cross_entropy(logits, batch['label']) * mask),
      'top1': jnp.sum(metrics_lib.topk_correct(logits, batch['label'], 1) *
                      mask),
      'top5': jnp.sum(metrics_lib.topk_correct(logits, batch['label'], 5) *
                      mask),
      'count': jnp.sum(mask),
  }


def jit_train_step(config, mesh, shardings, graphdef, optimizer,
                   learning_rate_fn):
  """Jits `train_step` with explicit shardings and the state donated."""
  step = functools.partial(
      train_step, graphdef=graphdef, optimizer=optimizer,
      learning_rate_fn=learning_rate_fn,
      dropout_rate=config.model.dropout_rate, seed=config.seed)
  batch = sharding.batch_sharding(mesh)
  return jax.jit(step, in_shardings=(shardings, batch),
                 out_shardings=(shardings, sharding.replicated(mesh)),
                 donate_argnums=0,
                 compiler_options=sharding.compiler_options(mesh))


def jit_eval_step(mesh, param_shardings, graphdef):
  return jax.jit(functools.partial(eval_step, graphdef=graphdef),
                 in_shardings=(param_shardings, sharding.batch_sharding(mesh)),
                 out_shardings=sharding.replicated(mesh),
                 compiler_options=sharding.compiler_options(mesh))


def evaluate(p_eval_step, params, config, mesh):
  """Evaluates `params` on the whole evaluation split, counting each example once.

  Returns:
    A dict with eval_loss, eval_top1_error, eval_top5_error and eval_examples.
  """
  # NOTE: this assumes process p's devices hold the p-th block of rows, as
  # with jax.make_mesh. Unlike training, evaluation does not read the rows
  # from the sharding (sharding.process_batch_rows).
  local_batch = config.eval_batch_size // jax.process_count()
  dataset, total = input_pipeline.create_eval_dataset(
      config, local_batch, jax.process_index(), jax.process_count())
  sums = None
  for batch in dataset.as_numpy_iterator():
    out = p_eval_step(params, sharding.shard_batch(batch, mesh))
    sums = out if sums is None else jax.tree.map(jnp.add, sums, out)
  sums = jax.device_get(sums)
  count = float(sums['count'])
  if int(round(count)) != total:
    raise RuntimeError(f'Evaluation scored {count} examples, expected {total}.')
  return {
      'eval_loss': sums['loss'] / count,
      'eval_top1_error': 1 - sums['top1'] / count,
      'eval_top5_error': 1 - sums['top5'] / count,
      'eval_examples': count,
  }


class PreemptionFlag:
  """Records SIGTERM so the loop can finish its step, checkpoint and exit cleanly."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    def handler(signum, frame):
      del frame
      logging.warning('Received signal %d: stopping after this step.', signum)
      self.requested = True
    try:
      self._previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # Not the main thread: leave signals alone.
      self._previous = None
    return self

  def agreed(self) -> bool:
    """Returns whether any process received SIGTERM.

    Every process must call it at the same step, so that all of them stop
    after the same step and take part in the same final checkpoint.
    """
    if jax.process_count() == 1:
      return self.requested
    requested = multihost_utils.process_allgather(np.asarray(self.requested))
    return bool(np.any(requested))

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def total_train_steps(config, num_train_examples: int) -> tuple[int, int]:
  """Returns (steps_per_epoch, total steps) from num_epochs or num_train_steps."""
  steps_per_epoch = max(1, num_train_examples // config.batch_size)
  if config.num_train_steps > 0:
    return steps_per_epoch, config.num_train_steps
  return steps_per_epoch, int(math.ceil(config.num_epochs * steps_per_epoch))


def check_finite(step_losses: list[tuple[int, float]]) -> None:
  """Raises FloatingPointError naming the first step whose loss is NaN or infinite."""
  bad = metrics_lib.first_nonfinite([loss for _, loss in step_losses])
  if bad is not None:
    step, loss = step_losses[bad]
    raise FloatingPointError(
        f'Training loss is {loss} at step {step}. The last good checkpoint is '
        'kept in the workdir. Lower --config.learning_rate or check the '
        'input data, then run again to resume from it.')


def summarize(history: dict) -> dict:
  """Averages a list of per-step metric dicts."""
  return {k: float(np.mean(v)) for k, v in history.items()}


def images_per_second(batch_size, steps, seconds):
  return batch_size * steps / max(seconds, 1e-9)
