"""Per-layer forward+backward times of the JAX model, for profiling the step.

Each layer runs alone on a random input of the shape it receives in the full
network, with every column on one device, as on a 1x1 mesh. The time covers
the forward pass and the gradients of the sum of its outputs with respect to
the parameters and (for every layer but conv1) the input. Rows carry the same
names as `torch_reference.layer_breakdown`, so the two can be printed side by
side. A conv or fc row includes its ReLU, and fc6 and fc7 include dropout.
"""

import functools
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from alexnet_jax import models
from alexnet_jax import sharding

LAYER_NAMES = ('conv1', 'lrn1', 'pool1', 'conv2', 'lrn2', 'pool2', 'conv3',
               'conv4', 'conv5', 'pool5', 'fc6', 'fc7', 'fc8')


def _per_column(fn, columns):
  """Applies `fn` to each column slice of a [..., columns * c] input."""
  def apply(params, x):
    del params
    return jnp.concatenate([fn(c) for c in jnp.split(x, columns, axis=-1)],
                           axis=-1)
  return apply


# pylint: disable=protected-access
def _column_conv(stride, padding, shared_input):
  """Runs a conv layer as `models._forward` does, on every column."""
  def apply(params, x):
    if shared_input:
      h = models._all_columns(x, params['kernel'], params['bias'], stride,
                              padding)
    else:
      h = [models._conv(c, k, b, stride, padding) for c, k, b in zip(
          jnp.split(x, params['kernel'].shape[0], axis=-1), params['kernel'],
          params['bias'])]
    return jnp.concatenate([jax.nn.relu(c) for c in h], axis=-1)
  return apply


def _column_dense(rate):
  """Runs fc6 or fc7 as `models._forward` does, on every column."""
  def apply(params, x):
    y = jax.nn.relu(models._column_dense(x, params['kernel']) +
                    params['bias'][:, None, :])
    keep = jax.random.bernoulli(jax.random.key(0), 1 - rate, y.shape)
    y = jnp.where(keep, y / (1 - rate), 0)
    return jnp.concatenate(list(y), axis=-1)
  return apply
# pylint: enable=protected-access


def _layers(geom, rate):
  """Returns (name, function, input shape, parameter shapes) per layer."""
  c1, c2, c3, c4, c5 = geom.conv
  s1, q1, q2, q5 = geom.spatial
  s0 = geom.input_size
  n = geom.columns
  pool = _per_column(functools.partial(
      models.max_pool, window=geom.pool_window, stride=geom.pool_stride), n)
  lrn = _per_column(models.local_response_norm, n)
  same = 'SAME'

  def conv(k, cin, cout):
    return {'kernel': (n, k, k, cin, cout), 'bias': (n, cout)}

  fc = geom.fc
  return [
      ('conv1', _column_conv(4, (geom.conv1_padding,) * 2, True),
       (s0, s0, 3), conv(11, 3, c1)),
      ('lrn1', lrn, (s1, s1, n * c1), {}),
      ('pool1', pool, (s1, s1, n * c1), {}),
      ('conv2', _column_conv(1, same, False), (q1, q1, n * c1),
       conv(5, c1, c2)),
      ('lrn2', lrn, (q1, q1, n * c2), {}),
      ('pool2', pool, (q1, q1, n * c2), {}),
      ('conv3', _column_conv(1, same, True), (q2, q2, n * c2),
       conv(3, n * c2, c3)),
      ('conv4', _column_conv(1, same, False), (q2, q2, n * c3),
       conv(3, c3, c4)),
      ('conv5', _column_conv(1, same, False), (q2, q2, n * c4),
       conv(3, c4, c5)),
      ('pool5', pool, (q2, q2, n * c5), {}),
      ('fc6', _column_dense(rate), (geom.fc6_inputs,),
       {'kernel': (n, geom.fc6_inputs, fc), 'bias': (n, fc)}),
      ('fc7', _column_dense(rate), (n * fc,),
       {'kernel': (n, n * fc, fc), 'bias': (n, fc)}),
      ('fc8', lambda p, x: x @ p['kernel'] + p['bias'], (n * fc,),
       {'kernel': (n * fc, geom.num_classes), 'bias': (geom.num_classes,)}),
  ]


def _time(fn, args, warmup, steps):
  for _ in range(warmup):
    jax.block_until_ready(fn(*args))
  durations = []
  for _ in range(steps):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    durations.append(time.perf_counter() - start)
  return statistics.median(durations)


def layer_breakdown(model_config, batch_size, *, warmup=2, steps=5,
                    dtype=jnp.float32):
  """Times forward+backward of each layer alone on the default device.

  Returns:
    One dict per layer in forward order, with name, input_shape (NHWC) and
    forward_backward_ms (median of the timed runs).
  """
  geom = models.geometry(model_config)
  rng = np.random.default_rng(0)
  rows = []
  for name, fn, in_shape, param_shapes in _layers(
      geom, model_config.dropout_rate):
    shape = (batch_size,) + in_shape
    x = jnp.asarray(rng.standard_normal(shape), dtype)
    params = {k: jnp.asarray(0.01 * rng.standard_normal(s), dtype)
              for k, s in param_shapes.items()}
    argnums = (0,) if name == 'conv1' else (0, 1)
    grad = jax.jit(jax.grad(lambda p, a, fn=fn: jnp.sum(
        fn(p, a).astype(jnp.float32)), argnums=argnums),
                   compiler_options=sharding.compiler_options())
    seconds = _time(grad, (params, x), warmup, steps)
    rows.append({'name': name, 'input_shape': shape,
                 'forward_backward_ms': 1e3 * seconds})
  return rows
