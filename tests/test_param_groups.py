"""Tests of the SGD parameter groups and momentum forms, against updates worked by hand."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from alexnet_jax import input_pipeline
from alexnet_jax import metrics as metrics_lib
from alexnet_jax import param_groups
from alexnet_jax import sharding
from alexnet_jax import train
from configs import digits

LR = 0.1
DECAY = 0.1


def tiny_config(groups):
  config = digits.get_config()
  config.model.width = 0.125
  config.model.dropout_rate = 0.0
  config.learning_rate = LR
  config.weight_decay = DECAY
  config.mesh.data = 1
  config.optimizer.param_groups = groups
  return config


@functools.lru_cache(maxsize=None)
def one_step(groups):
  """Returns (params before, gradients, params after) of one train step."""
  config = tiny_config(groups)
  mesh = sharding.create_mesh(config.mesh, devices=jax.devices()[:1])
  rng = np.random.default_rng(0)
  batch = {'image': rng.integers(0, 256, (8, 67, 67, 3), np.uint8),
           'offset': rng.normal(-110, 10, (8, 3)).astype(np.float32),
           'label': rng.integers(0, 10, 8).astype(np.int32)}
  optimizer = train.create_optimizer(config)
  with jax.set_mesh(mesh):
    state, shardings, graphdef = train.create_train_state(config, mesh,
                                                          optimizer)
    before = jax.device_get(state.params)

    def loss(params):
      logits = train._forward(graphdef, params,  # pylint: disable=protected-access
                              input_pipeline.model_input(batch))
      return jnp.mean(metrics_lib.cross_entropy(logits, batch['label']))

    grads = jax.device_get(jax.jit(jax.grad(loss))(state.params))
    step = train.jit_train_step(config, mesh, shardings, graphdef, optimizer,
                                train.create_learning_rate_fn(config, 10))
    state, _ = step(state, batch)
  return before, grads, jax.device_get(state.params)


def expected_update(before, grads, bias_lr, bias_decay):
  """SGD from zero velocity: w - lr_mult * LR * (g + decay * w), per group."""
  def update(path, w, g):
    if param_groups.is_bias(path):
      return w - bias_lr * LR * (g + bias_decay * w)
    return w - LR * (g + DECAY * w)
  return jax.tree_util.tree_map_with_path(update, before, grads)


def test_caffe_biases_double_rate_no_decay():
  before, grads, after = one_step('caffe')
  expected = expected_update(before, grads, bias_lr=2.0, bias_decay=0.0)
  for layer in after:
    np.testing.assert_allclose(after[layer]['bias'], expected[layer]['bias'],
                               rtol=1e-5, atol=1e-7, err_msg=layer)


def test_caffe_kernels_rate_with_decay():
  before, grads, after = one_step('caffe')
  expected = expected_update(before, grads, bias_lr=2.0, bias_decay=0.0)
  for layer in after:
    np.testing.assert_allclose(after[layer]['kernel'],
                               expected[layer]['kernel'], rtol=1e-5,
                               atol=1e-7, err_msg=layer)


def test_caffe_differs_from_paper_groups():
  before, grads, after = one_step('caffe')
  paper = expected_update(before, grads, bias_lr=1.0, bias_decay=DECAY)
  assert not np.allclose(after['conv2']['bias'], paper['conv2']['bias'],
                         rtol=1e-5, atol=1e-7)


def test_paper_groups_decay_biases():
  before, grads, after = one_step('paper')
  expected = expected_update(before, grads, bias_lr=1.0, bias_decay=DECAY)
  np.testing.assert_allclose(after['fc6']['bias'], expected['fc6']['bias'],
                             rtol=1e-5, atol=1e-7)


def momentum_updates(form):
  """Returns the second update after a learning-rate change from 1.0 to 0.1."""
  optimizer = param_groups.create_optimizer(_optimizer_config(form))
  params = {'fc': {'kernel': jnp.ones(3), 'bias': jnp.ones(2)}}
  grads = jax.tree.map(jnp.ones_like, params)
  state = optimizer.init(params)
  for lr in (1.0, 0.1):
    state = param_groups.set_learning_rate(state, lr)
    updates, state = optimizer.update(grads, state, params)
  return updates


def _optimizer_config(form):
  config = tiny_config('paper')
  config.weight_decay = 0.0
  config.momentum = 0.9
  config.optimizer.momentum_form = form
  return config


def test_paper_velocity_keeps_old_rate():
  updates = momentum_updates('paper')
  # v1 = -1.0 g, v2 = 0.9 v1 - 0.1 g = -1.0 g.
  np.testing.assert_allclose(updates['fc']['kernel'], -1.0, rtol=1e-6)


def test_sgd_velocity_takes_new_rate():
  updates = momentum_updates('sgd')
  # v2 = 0.9 g + g, step -0.1 v2 = -0.19 g.
  np.testing.assert_allclose(updates['fc']['kernel'], -0.19, rtol=1e-6)


def test_optax_sgd_matches_sgd_form():
  reference = optax.sgd(0.1, momentum=0.9)
  params = {'fc': {'kernel': jnp.ones(3), 'bias': jnp.ones(2)}}
  grads = jax.tree.map(jnp.ones_like, params)
  state = reference.init(params)
  for _ in range(2):
    updates, state = reference.update(grads, state, params)
  ours = param_groups.create_optimizer(_optimizer_config('sgd'))
  our_state = param_groups.set_learning_rate(ours.init(params), 0.1)
  for _ in range(2):
    our_updates, our_state = ours.update(grads, our_state, params)
  np.testing.assert_allclose(our_updates['fc']['kernel'],
                             updates['fc']['kernel'], rtol=1e-6)
