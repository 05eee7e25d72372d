"""Learning-rate schedules, including the paper's divide-by-10-on-plateau rule.

Krizhevsky et al. (2012) divide the learning rate by 10 whenever the validation
error stops improving, three times in all, and then stop training. 'plateau'
implements that rule on the validation top-1 error with
`optax.contrib.reduce_on_plateau` (factor 0.1, relative threshold `rtol`, no
cooldown). It adds two things optax lacks: a count of reductions, and a stop
flag that is set at the plateau after the last allowed reduction.

The schedule state is a small pytree in `TrainState.schedule`, so it is
checkpointed with the parameters and a resumed run takes the same decisions.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import optax
from absl import logging
from optax import contrib

SCHEDULES = ('plateau', 'step', 'constant')
PLATEAU_FACTOR = 0.1


def create_learning_rate_fn(config, steps_per_epoch: int):
  """Returns the base learning rate as a function of the step.

  'step' divides by 10 every `schedule_step_epochs` epochs. 'constant' and
  'plateau' return `learning_rate`, and 'plateau' multiplies it by the scale
  in the schedule state (see `learning_rate`).
  """
  base = config.learning_rate
  if config.schedule in ('constant', 'plateau'):
    return optax.constant_schedule(base)
  if config.schedule == 'step':
    every = max(1, config.schedule_step_epochs * steps_per_epoch)
    return optax.exponential_decay(base, every, 0.1, staircase=True)
  raise ValueError(f'Unknown schedule {config.schedule!r}: use one of '
                   f'{", ".join(repr(s) for s in SCHEDULES)}.')


def _plateau_transform(config):
  plateau = config.plateau
  return contrib.reduce_on_plateau(
      factor=PLATEAU_FACTOR, patience=plateau.patience, rtol=plateau.threshold,
      atol=0.0, cooldown=0, accumulation_size=1)


def init_schedule_state(config) -> dict:
  """Returns the schedule state of a new run: scale 1, no reductions, no stop.

  Every schedule carries it, so checkpoints have one structure; only
  'plateau' ever changes it.
  """
  plateau = _plateau_transform(config).init(jnp.zeros(()))
  return {'plateau': plateau, 'reductions': jnp.zeros((), jnp.int32),
          'stop': jnp.zeros((), jnp.bool_)}


def learning_rate(learning_rate_fn, step, schedule_state):
  """Returns the learning rate at `step`: the base schedule times the plateau scale."""
  return learning_rate_fn(step) * schedule_state['plateau'].scale


def plateau_update(schedule_state, error, *, config):
  """Feeds one validation top-1 error to the plateau rule.

  The error is positive and lower is better. It counts as an improvement when
  error < (1 - threshold) * best. After `patience` evaluations without one the
  scale is divided by 10; at the plateau after `max_reductions` divisions the
  scale stays and `stop` is set.

  Returns:
    The new schedule state.
  """
  transform = _plateau_transform(config)
  old = schedule_state['plateau']
  _, new = transform.update(jnp.zeros(()), old,
                            value=jnp.asarray(error, jnp.float32))
  plateaued = new.scale < old.scale
  limit = schedule_state['reductions'] >= config.plateau.max_reductions
  stop = schedule_state['stop'] | (plateaued & limit)
  new = new._replace(scale=jnp.where(plateaued & limit, old.scale, new.scale))
  reductions = schedule_state['reductions'] + (plateaued & ~limit).astype(
      jnp.int32)
  return {'plateau': new, 'reductions': reductions, 'stop': stop}


@dataclasses.dataclass(frozen=True)
class PlateauEvent:
  """The decision of one plateau update, for logging."""

  reduced: bool  # The learning rate was divided by 10.
  stopped: bool  # Training ends here.
  reductions: int  # Divisions so far.
  scale: float  # Multiplier on the base learning rate after the update.


def describe_update(before, after) -> PlateauEvent:
  """Compares two host copies of the schedule state."""
  reductions = int(after['reductions'])
  return PlateauEvent(
      reduced=reductions > int(before['reductions']),
      stopped=bool(after['stop']) and not bool(before['stop']),
      reductions=reductions, scale=float(after['plateau'].scale))


def log_event(event: PlateauEvent, step: int, error: float, config) -> None:
  """Logs a reduction or the stop with the step and the error that caused it."""
  plateau = config.plateau
  if event.reduced:
    logging.info(
        'Plateau at step %d: validation top-1 error %.4f has not improved by '
        'a relative %g for %d evaluations. Learning rate divided by 10 to %g '
        '(reduction %d of %d).', step, error, plateau.threshold,
        plateau.patience, config.learning_rate * event.scale,
        event.reductions, plateau.max_reductions)
  if event.stopped:
    logging.info(
        'Plateau at step %d: validation top-1 error %.4f has not improved '
        'after %d reductions. Training stops here.', step, error,
        event.reductions)


def check_config(config) -> None:
  """Raises ValueError on schedule settings that cannot work."""
  if config.schedule not in SCHEDULES:
    raise ValueError(f'Unknown schedule {config.schedule!r}: use one of '
                     f'{", ".join(repr(s) for s in SCHEDULES)}.')
  if config.schedule != 'plateau':
    return
  plateau = config.plateau
  if plateau.patience < 1 or plateau.max_reductions < 0:
    raise ValueError(
        f'plateau.patience={plateau.patience} and plateau.max_reductions='
        f'{plateau.max_reductions} are invalid: use patience >= 1 and '
        'max_reductions >= 0.')
  if not 0 <= plateau.threshold < 1 or not math.isfinite(plateau.threshold):
    raise ValueError(f'plateau.threshold={plateau.threshold} is invalid: use '
                     'a relative improvement in [0, 1), such as 0.01.')
  if config.eval_every_steps <= 0:
    raise ValueError(
        "schedule='plateau' needs periodic evaluations, but "
        f'eval_every_steps={config.eval_every_steps}. Set '
        '--config.eval_every_steps to the steps between evaluations.')


def jit_plateau_update(config, replicated):
  """Jits `plateau_update` with a replicated state, so every process agrees."""
  def update(state, error):
    return plateau_update(state, error, config=config)
  return jax.jit(update, out_shardings=replicated)
