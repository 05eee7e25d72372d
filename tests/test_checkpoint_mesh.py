"""Checkpoints move between meshes: save on one mesh, restore and train on another.

A state saved through the Orbax checkpoint manager on 2x2 restores on 1x1,
and one saved on 1x2 restores on 2x1. Training then continues from the
restored step with the same losses as a run that stayed on the saving mesh.
"""

import itertools

import jax
import numpy as np
import pytest

import meshes
from alexnet_jax import checkpointing
from alexnet_jax import input_pipeline
from alexnet_jax import sharding

SAVED_STEP = 3
MORE_STEPS = 3


def _batches(config, start_step, count):
  dataset, _ = input_pipeline.create_train_dataset(
      config, config.batch_size, 0, 1, start_step=start_step)
  return [{key: batch[key] for key in ('image', 'offset', 'label')}
          for batch in itertools.islice(dataset.as_numpy_iterator(), count)]


def _train(step, state, batches):
  """Runs the compiled train step; returns the state and per-step losses."""
  losses = []
  with jax.set_mesh(step['mesh']):
    for batch in batches:
      state, step_metrics = step['step'](
          state, sharding.shard_batch(batch, step['mesh']))
      losses.append(float(step_metrics['train_loss']))
  return state, losses


def _restore(workdir, step):
  """Restores the latest checkpoint in `workdir` onto `step`'s mesh."""
  manager = checkpointing.create_manager(str(workdir), keep=2)
  abstract = checkpointing.abstract_with_shardings(
      jax.eval_shape(lambda s: s, step['state']), step['shardings'])
  with jax.set_mesh(step['mesh']):
    state = checkpointing.restore_latest(manager, abstract)
  manager.close()
  return state


def _move(source_shape, target_shape, workdir):
  """Trains on one mesh, checkpoints, and continues on both meshes."""
  source = meshes.compiled_train_step(*source_shape)
  target = meshes.compiled_train_step(*target_shape)
  config = source['config']
  state = jax.device_put(jax.device_get(source['state']),
                         source['shardings'])
  state, _ = _train(source, state, _batches(config, 0, SAVED_STEP))

  manager = checkpointing.create_manager(str(workdir), keep=2)
  checkpointing.save(manager, SAVED_STEP, state)
  manager.wait_until_finished()
  manager.close()
  saved = jax.device_get(state)

  restored = _restore(workdir, target)
  more = _batches(config, SAVED_STEP, MORE_STEPS)
  _, stayed_losses = _train(source, state, more)
  restored_host = jax.device_get(restored)
  _, moved_losses = _train(target, restored, more)
  return {'saved': saved, 'restored': restored_host,
          'restored_sharding': restored.params['conv2']['kernel'].sharding,
          'target_mesh': target['mesh'], 'stayed': stayed_losses,
          'moved': moved_losses}


@pytest.fixture(scope='module', params=[((2, 2), (1, 1)), ((1, 2), (2, 1))],
                ids=['2x2_to_1x1', '1x2_to_2x1'])
def moved(request, tmp_path_factory):
  source_shape, target_shape = request.param
  return _move(source_shape, target_shape, tmp_path_factory.mktemp('ckpt'))


def test_restored_step(moved):
  assert int(moved['restored'].step) == SAVED_STEP


def test_restored_params_equal_saved(moved):
  saved = jax.tree_util.tree_leaves_with_path(moved['saved'].params)
  restored = jax.tree.leaves(moved['restored'].params)
  for (path, want), got in zip(saved, restored):
    np.testing.assert_array_equal(got, want,
                                  err_msg=jax.tree_util.keystr(path))


def test_restored_momentum_equal_saved(moved):
  saved = jax.tree.leaves(moved['saved'].opt_state)
  restored = jax.tree.leaves(moved['restored'].opt_state)
  for got, want in zip(restored, saved):
    np.testing.assert_array_equal(got, want)


def test_restored_onto_target_mesh(moved):
  assert moved['restored_sharding'].mesh == moved['target_mesh']


def test_moved_run_losses_match(moved):
  np.testing.assert_allclose(moved['moved'], moved['stayed'], rtol=1e-5)
