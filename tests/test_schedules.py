"""Tests of the learning-rate schedules, above all the paper's plateau rule."""

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest

from alexnet_jax import schedules

# Errors fed to the rule with threshold 0.01, patience 2 and 3 reductions.
# Evaluations 3, 6 and 9 end a plateau and divide the rate; evaluation 7
# improves (0.69 < 0.99 * 0.7); evaluation 11 ends the fourth plateau.
ERRORS = (0.9, 0.8, 0.8, 0.8, 0.7, 0.7, 0.7, 0.69, 0.69, 0.69, 0.69, 0.69)
EXPECTED_REDUCTIONS = (0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3)
EXPECTED_STOP = (False,) * 11 + (True,)


def plateau_config():
  config = ml_collections.ConfigDict()
  config.learning_rate = 0.01
  config.schedule = 'plateau'
  config.eval_every_steps = 100
  config.plateau = ml_collections.ConfigDict(
      {'threshold': 0.01, 'patience': 2, 'max_reductions': 3})
  return config


def run_errors(config, state, errors):
  decisions = []
  for error in errors:
    state = schedules.plateau_update(state, error, config=config)
    host = jax.device_get(state)
    decisions.append((int(host['reductions']), bool(host['stop']),
                      float(host['plateau'].scale)))
  return state, decisions


def test_plateau_reduction_points():
  config = plateau_config()
  _, decisions = run_errors(config, schedules.init_schedule_state(config),
                            ERRORS)
  assert tuple(d[0] for d in decisions) == EXPECTED_REDUCTIONS


def test_plateau_stops_at_fourth():
  config = plateau_config()
  _, decisions = run_errors(config, schedules.init_schedule_state(config),
                            ERRORS)
  assert tuple(d[1] for d in decisions) == EXPECTED_STOP


def test_plateau_scale_is_tenth_per_reduction():
  config = plateau_config()
  _, decisions = run_errors(config, schedules.init_schedule_state(config),
                            ERRORS)
  scales = np.array([d[2] for d in decisions])
  np.testing.assert_allclose(scales, 0.1 ** np.array(EXPECTED_REDUCTIONS),
                             rtol=1e-6)


def test_plateau_survives_checkpoint(tmp_path):
  config = plateau_config()
  _, straight = run_errors(config, schedules.init_schedule_state(config),
                           ERRORS)
  middle, first = run_errors(config, schedules.init_schedule_state(config),
                             ERRORS[:5])
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp_path / 'schedule', middle)
  checkpointer.wait_until_finished()
  abstract = jax.eval_shape(lambda: schedules.init_schedule_state(config))
  restored = checkpointer.restore(tmp_path / 'schedule', abstract)
  _, rest = run_errors(config, restored, ERRORS[5:])
  assert first + rest == straight


def test_step_schedule_divides_by_ten():
  config = plateau_config()
  config.schedule = 'step'
  config.schedule_step_epochs = 2
  lr_fn = schedules.create_learning_rate_fn(config, steps_per_epoch=10)
  values = [float(lr_fn(step)) for step in (0, 19, 20, 40)]
  np.testing.assert_allclose(values, [0.01, 0.01, 0.001, 0.0001], rtol=1e-6)


def test_plateau_needs_evaluations():
  config = plateau_config()
  config.eval_every_steps = -1
  with pytest.raises(ValueError, match='eval_every_steps'):
    schedules.check_config(config)


def test_unknown_schedule_rejected():
  config = plateau_config()
  config.schedule = 'cosine'
  with pytest.raises(ValueError, match="'plateau'"):
    schedules.check_config(config)
