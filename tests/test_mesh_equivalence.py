"""The same function on every mesh: 1x1, 1x2, 2x1 and 2x2 compute the same network.

Each mesh gets the same parameters and digits batches. Logits and gradients
must agree within 1e-5 relative error in float32, and 10 steps of the real
jitted train step, dropout on, must end with parameters within 1e-4.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import meshes
from alexnet_jax import input_pipeline
from alexnet_jax import metrics as metrics_lib
from alexnet_jax import models
from alexnet_jax import sharding
from alexnet_jax import train

STEPS = 10


@pytest.fixture(scope='module')
def batches():
  config = meshes.tiny_config()
  dataset, _ = input_pipeline.create_train_dataset(config, config.batch_size,
                                                   0, 1)
  return [{key: batch[key] for key in ('image', 'offset', 'label')}
          for batch in itertools.islice(dataset.as_numpy_iterator(), STEPS)]


@pytest.fixture(scope='module')
def initial_state():
  """The 1x1 mesh's freshly initialised train state, on the host."""
  return jax.device_get(meshes.compiled_train_step(1, 1)['state'])


def _relative_error(got, want):
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  return np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30)


def _forward_and_grads(shape, params, batch):
  """Returns logits and the loss gradient, with dropout, on one mesh."""
  step = meshes.compiled_train_step(*shape)
  mesh, graphdef, config = step['mesh'], step['graphdef'], step['config']
  geom = models.geometry(config.model)
  masks = models.dropout_masks(jax.random.key(7), config.batch_size, geom,
                               config.model.dropout_rate)

  def loss_fn(params_, images, labels):
    logits = train._forward(graphdef, params_, images, masks)  # pylint: disable=protected-access
    loss = jnp.mean(metrics_lib.cross_entropy(logits, labels))
    return loss, logits

  with jax.set_mesh(mesh):
    params = jax.device_put(params, step['shardings'].params)
    batch = sharding.shard_batch(batch, mesh)
    grad_fn = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    (_, logits), grads = grad_fn(params, input_pipeline.model_input(batch),
                                 batch['label'])
  return jax.device_get((logits, grads))


@pytest.fixture(scope='module')
def outputs(initial_state, batches):
  return {shape: _forward_and_grads(shape, initial_state.params, batches[0])
          for shape in meshes.MESHES}


@pytest.mark.parametrize('shape', meshes.MESHES[1:])
def test_logits_match_1x1(outputs, shape):
  error = _relative_error(outputs[shape][0], outputs[(1, 1)][0])
  assert error < 1e-5


@pytest.mark.parametrize('shape', meshes.MESHES[1:])
def test_grads_match_1x1(outputs, shape):
  want = dict(jax.tree_util.tree_leaves_with_path(outputs[(1, 1)][1]))
  for path, got in jax.tree_util.tree_leaves_with_path(outputs[shape][1]):
    error = _relative_error(got, want[path])
    assert error < 1e-5, f'{jax.tree_util.keystr(path)}: {error:.3g}'


def test_grads_not_zero(outputs):
  norms = [np.abs(g).max() for g in jax.tree.leaves(outputs[(1, 1)][1])]
  assert min(norms) > 0


def _train(shape, state, batches):
  """Runs the compiled train step over `batches`; returns params and losses."""
  step = meshes.compiled_train_step(*shape)
  mesh = step['mesh']
  with jax.set_mesh(mesh):
    state = jax.device_put(state, step['shardings'])
    losses = []
    for batch in batches:
      state, step_metrics = step['step'](state, sharding.shard_batch(batch,
                                                                      mesh))
      losses.append(float(step_metrics['train_loss']))
  return jax.device_get(state), losses


@pytest.fixture(scope='module')
def trained(initial_state, batches):
  return {shape: _train(shape, initial_state, batches)
          for shape in meshes.MESHES}


def test_training_moves_params(trained, initial_state):
  state, _ = trained[(1, 1)]
  error = _relative_error(state.params['fc7']['kernel'],
                          initial_state.params['fc7']['kernel'])
  assert error > 1e-3


@pytest.mark.parametrize('shape', meshes.MESHES[1:])
def test_ten_steps_params_match_1x1(trained, shape):
  state, _ = trained[shape]
  assert int(state.step) == STEPS
  want = dict(jax.tree_util.tree_leaves_with_path(trained[(1, 1)][0].params))
  for path, got in jax.tree_util.tree_leaves_with_path(state.params):
    error = _relative_error(got, want[path])
    assert error < 1e-4, f'{jax.tree_util.keystr(path)}: {error:.3g}'


@pytest.mark.parametrize('shape', meshes.MESHES[1:])
def test_ten_steps_losses_match_1x1(trained, shape):
  np.testing.assert_allclose(trained[shape][1], trained[(1, 1)][1], rtol=1e-5)
