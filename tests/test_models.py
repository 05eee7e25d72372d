"""The model against the paper's numbers and independent references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
from flax import nnx

from alexnet_jax import models
from alexnet_jax import sharding
from configs import ilsvrc2012

PAPER_PARAMS = 60_965_224


def _model_config(**overrides):
  config = ilsvrc2012.get_config().model
  config.update(overrides)
  return config


def _abstract_params(config):
  model = nnx.eval_shape(lambda: models.create_model(config, 0))
  return nnx.to_pure_dict(nnx.state(model, nnx.Param))


def test_full_size_parameter_count():
  params = _abstract_params(_model_config())
  assert models.count_params(params) == PAPER_PARAMS


def test_per_column_widths():
  params = _abstract_params(_model_config())
  out_channels = [params[f'conv{i}']['kernel'].shape[-1] for i in range(1, 6)]
  assert out_channels == [48, 128, 192, 192, 128]
  assert params['fc6']['kernel'].shape == (2, 6 * 6 * 256, 2048)
  assert params['fc7']['kernel'].shape == (2, 4096, 2048)
  assert params['fc8']['kernel'].shape == (4096, 1000)


def test_column_wiring_in_shapes():
  params = _abstract_params(_model_config())
  # conv2, conv4 and conv5 read their own column; conv3 reads both.
  assert params['conv2']['kernel'].shape[-2] == 48
  assert params['conv3']['kernel'].shape[-2] == 256
  assert params['conv4']['kernel'].shape[-2] == 192
  assert params['conv5']['kernel'].shape[-2] == 192


def test_neuron_counts_per_layer():
  geom = models.geometry(_model_config())
  c1, p1, p2, p5 = geom.spatial
  assert c1 * c1 * 96 == 290_400
  assert p1 * p1 * 256 == 186_624  # conv2 keeps pool1's size.
  assert p2 * p2 * 384 == 64_896
  assert p5 * p5 * 256 * 1 == 9216


def test_input_224_padding_keeps_55():
  geom = models.geometry(_model_config(input_size=224))
  assert geom.conv1_padding == (1, 2)
  assert geom.spatial[0] == 55


def test_input_too_small_raises():
  with pytest.raises(ValueError, match='input_size=40'):
    models.geometry(_model_config(input_size=40))


def test_paper_initialisation():
  model = models.create_model(_model_config(width=0.25, num_classes=10), 0)
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  bias_values = {name: float(np.unique(np.asarray(layer['bias']))[0])
                 for name, layer in params.items()}
  assert bias_values == {'conv1': 0.0, 'conv2': 1.0, 'conv3': 0.0,
                         'conv4': 1.0, 'conv5': 1.0, 'fc6': 1.0, 'fc7': 1.0,
                         'fc8': 0.0}
  kernel_std = float(np.std(np.asarray(params['fc6']['kernel'])))
  assert abs(kernel_std - 0.01) < 0.0005


def test_lrn_matches_tensorflow():
  rng = np.random.default_rng(0)
  x = rng.uniform(0, 60, size=(2, 5, 5, 48)).astype(np.float32)
  expected = tf.nn.local_response_normalization(
      x, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75).numpy()
  actual = np.asarray(models.local_response_norm(jnp.asarray(x)))
  np.testing.assert_allclose(actual, expected, rtol=1e-5)


def test_lrn_alpha_matters_at_this_scale():
  x = jnp.full((1, 1, 1, 8), 50.0)
  ratio = float(models.local_response_norm(x)[0, 0, 0, 4] / 50.0)
  # 5 channels of 50^2 in the window: (2 + 1e-4 * 12500) ** -0.75.
  assert ratio == pytest.approx((2 + 1.25) ** -0.75, rel=1e-6)


def test_dropout_off_in_evaluation():
  config = _model_config(width=0.125, num_classes=10, input_size=67)
  model = models.create_model(config, 0)
  mesh = sharding.create_mesh(_mesh_config(1, 1))
  images = jax.random.normal(jax.random.key(0), (4, 67, 67, 3)) * 50
  graphdef, params = nnx.split(model)

  @jax.jit
  def logits(params, masks=None):
    return nnx.merge(graphdef, params)(images, dropout_masks=masks)

  with jax.set_mesh(mesh):
    first = logits(params)
    second = logits(params)
    masks = models.dropout_masks(jax.random.key(1), 4, model.geometry, 0.5)
    dropped = logits(params, masks)
  np.testing.assert_array_equal(np.asarray(first), np.asarray(second))
  assert not np.allclose(np.asarray(first), np.asarray(dropped))


def test_dropout_keeps_half():
  geom = models.geometry(_model_config())
  fc6_mask, fc7_mask = models.dropout_masks(jax.random.key(0), 64, geom, 0.5)
  assert float(jnp.mean(fc6_mask)) == pytest.approx(0.5, abs=0.01)
  assert float(jnp.mean(fc7_mask)) == pytest.approx(0.5, abs=0.01)


def _mesh_config(data, model):
  config = ilsvrc2012.get_config().mesh
  config.data, config.model = data, model
  return config
