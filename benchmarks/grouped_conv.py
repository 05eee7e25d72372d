r"""Times conv2 as one grouped convolution against two plain half-size convolutions.

XLA's CPU backend has a slow path for `feature_group_count > 1`. This script
measures conv2 at the size of Krizhevsky et al. (2012): 27x27 input, 5x5
kernel, 48 input and 128 output channels per column, float32. It times the
forward and backward pass (the gradients of the input and the kernel) in three
forms:

- grouped: one convolution with `feature_group_count=2`, as `jax.vmap` over
  the columns or Caffe's `group: 2` would express it;
- plain: two independent half-size convolutions;
- columns: the project's column loop, `models._conv` over the stacked
  per-column kernels, as the forward pass runs conv2 on a 1x1 mesh.

The forms run in interleaved rounds and each reports its fastest round, so
the ratio is robust to other load on the machine.

    python -m benchmarks.grouped_conv --batch_size=32 --rounds=5
"""

import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from absl import flags
from jax import lax

from alexnet_jax import models

FLAGS = flags.FLAGS
flags.DEFINE_integer('batch_size', 32, 'Images per batch.')
flags.DEFINE_integer('rounds', 5, 'Timed rounds per form, interleaved.')
flags.DEFINE_integer('size', 27, 'Height and width of conv2 input (pool1 output).')

IN_PER_COLUMN = 48  # conv1 channels per column.
OUT_PER_COLUMN = 128  # conv2 channels per column.
KERNEL = 5


def _grouped(x, kernel, bias):
  """Convolves x [B,H,W,96] with kernel [5,5,48,256] in two feature groups."""
  y = lax.conv_general_dilated(x, kernel, (1, 1), 'SAME',
                               dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                               feature_group_count=2)
  return y + bias


def _plain(x, kernel, bias):
  """Two plain convolutions over the channel halves, concatenated."""
  xs = jnp.split(x, 2, axis=-1)
  ks = jnp.split(kernel, 2, axis=-1)
  bs = jnp.split(bias, 2)
  ys = [lax.conv_general_dilated(a, k, (1, 1), 'SAME',
                                 dimension_numbers=('NHWC', 'HWIO', 'NHWC')) + b
        for a, k, b in zip(xs, ks, bs)]
  return jnp.concatenate(ys, axis=-1)


def _columns(x, kernel, bias):
  """Runs the model's column loop over per-column kernels on a leading axis."""
  xs = jnp.split(x, 2, axis=-1)
  stacked = jnp.stack(jnp.split(kernel, 2, axis=-1))
  stacked_bias = jnp.stack(jnp.split(bias, 2))
  ys = [models._conv(a, k, b, 1, 'SAME')  # pylint: disable=protected-access
        for a, k, b in zip(xs, stacked, stacked_bias)]
  return jnp.concatenate(ys, axis=-1)


def _train_fn(conv):
  """Returns a jitted forward and backward pass of `conv` against a cotangent."""
  def loss(x, kernel, bias, cotangent):
    return jnp.sum(conv(x, kernel, bias) * cotangent)
  return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))


def main(argv):
  del argv
  rng = np.random.default_rng(0)
  size, batch = FLAGS.size, FLAGS.batch_size
  x = jnp.asarray(rng.standard_normal((batch, size, size, 2 * IN_PER_COLUMN)),
                  jnp.float32)
  kernel = jnp.asarray(0.01 * rng.standard_normal(
      (KERNEL, KERNEL, IN_PER_COLUMN, 2 * OUT_PER_COLUMN)), jnp.float32)
  bias = jnp.ones((2 * OUT_PER_COLUMN,), jnp.float32)
  cotangent = jnp.asarray(
      rng.standard_normal((batch, size, size, 2 * OUT_PER_COLUMN)), jnp.float32)
  forms = {'grouped': _grouped, 'plain': _plain, 'columns': _columns}
  fns = {name: _train_fn(conv) for name, conv in forms.items()}

  reference = None
  for name, fn in fns.items():  # Compile, warm up and check agreement.
    grads = jax.block_until_ready(fn(x, kernel, bias, cotangent))
    if reference is None:
      reference = grads
    for got, want in zip(grads, reference):
      np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)

  best = {name: float('inf') for name in fns}
  for _ in range(FLAGS.rounds):
    for name, fn in fns.items():
      start = time.perf_counter()
      jax.block_until_ready(fn(x, kernel, bias, cotangent))
      best[name] = min(best[name], time.perf_counter() - start)

  lines = [f'conv2 forward+backward, batch {batch}, {size}x{size}x'
           f'{2 * IN_PER_COLUMN} -> {2 * OUT_PER_COLUMN}, float32, '
           f'jax {jax.__version__}, {jax.devices()[0].platform}, '
           f'{platform.processor() or platform.machine()}']
  for name, seconds in best.items():
    lines.append(f'{name:<8} {seconds * 1000:9.1f} ms')
  lines.append(f'grouped / plain = {best["grouped"] / best["plain"]:.2f}x, '
               f'columns / plain = {best["columns"] / best["plain"]:.2f}x')
  print('\n'.join(lines))


if __name__ == '__main__':
  app.run(main)
