"""The fast layer forms equal their plain references, values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alexnet_jax import layers


def _random(shape, seed=0, scale=1.0):
  return jnp.asarray(
      scale * np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def test_lrn_matches_tensorflow():
  tf = pytest.importorskip('tensorflow')
  # Values up to 100 make alpha * sum(a^2) (up to 5) larger than k = 2.
  x = np.random.default_rng(0).uniform(-100, 100, (2, 7, 9, 48))
  x = x.astype(np.float32)
  expected = tf.nn.local_response_normalization(
      x, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75).numpy()
  actual = layers.local_response_norm(jnp.asarray(x))
  np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_lrn_reference_matches_tensorflow():
  tf = pytest.importorskip('tensorflow')
  x = np.random.default_rng(1).uniform(-100, 100, (1, 5, 5, 16))
  x = x.astype(np.float32)
  expected = tf.nn.local_response_normalization(
      x, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75).numpy()
  actual = layers.local_response_norm_reference(jnp.asarray(x))
  np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_lrn_gradient_matches_reference():
  x = _random((2, 6, 6, 16), scale=50.0)
  target = _random((2, 6, 6, 16), seed=3)
  fast = jax.grad(lambda a: jnp.sum(layers.local_response_norm(a) * target))
  plain = jax.grad(
      lambda a: jnp.sum(layers.local_response_norm_reference(a) * target))
  np.testing.assert_allclose(fast(x), plain(x), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('window,stride,size', [(3, 2, 13), (3, 2, 12),
                                                 (2, 2, 11)])
def test_max_pool_matches_reduce_window(window, stride, size):
  x = _random((2, size, size, 4))
  np.testing.assert_array_equal(layers.max_pool(x, window, stride),
                                layers.max_pool_reference(x, window, stride))


@pytest.mark.parametrize('window,stride', [(3, 2), (2, 2)])
def test_max_pool_gradient_with_ties(window, stride):
  # Small integers make many windows tie; the gradient must go to the same
  # input as XLA's select-and-scatter picks.
  x = jnp.asarray(np.random.default_rng(0).integers(0, 3, (2, 11, 11, 3)),
                  jnp.float32)
  target = _random((2, (11 - window) // stride + 1,
                    (11 - window) // stride + 1, 3), seed=4)
  fast = jax.grad(lambda a: jnp.sum(layers.max_pool(a, window, stride) *
                                    target))(x)
  plain = jax.grad(lambda a: jnp.sum(
      layers.max_pool_reference(a, window, stride) * target))(x)
  np.testing.assert_array_equal(fast, plain)
