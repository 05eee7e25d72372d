"""Fast CPU forms of local response normalization and max pooling.

Each function computes the same values as its plain form (kept here as
`*_reference` for tests and profiling) up to float rounding, and its gradient
is the same too. They differ in how XLA runs them on the CPU:

- LRN sums the n squared neighbours as a matmul with a banded 0/1 matrix,
  not as a `reduce_window`, and takes the 0.75 power with square roots.
- Max pooling keeps `reduce_window` forward but replaces its gradient. XLA's
  select-and-scatter is slow on the CPU, so elementwise loops over the
  window offsets route each gradient to the first maximum in the window, the
  input that select-and-scatter picks, one stride phase of the input at a
  time.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
from jax import lax

# LRN constants of Krizhevsky et al. (2012), section 3.3: k, n, alpha and
# beta, with alpha applied to the plain sum of squares over the window (Caffe
# and cuda-convnet divide it by n).
LRN_K = 2.0
LRN_N = 5
LRN_ALPHA = 1e-4
LRN_BETA = 0.75


def local_response_norm_reference(x, *, k=LRN_K, n=LRN_N, alpha=LRN_ALPHA,
                                  beta=LRN_BETA):
  """Computes LRN as the formula reads, with a `reduce_window` sum and `pow`."""
  half = n // 2
  window_sum = lax.reduce_window(
      x * x, jnp.zeros((), x.dtype), lax.add, (1,) * (x.ndim - 1) + (n,),
      (1,) * x.ndim, [(0, 0)] * (x.ndim - 1) + [(half, half)])
  return x * (k + alpha * window_sum) ** -beta


def local_response_norm(x, *, k=LRN_K, n=LRN_N, alpha=LRN_ALPHA,
                        beta=LRN_BETA):
  """Normalizes each channel by its n neighbours at the same pixel (the paper's LRN).

  b_i = a_i / (k + alpha * sum_{|j - i| <= n // 2} a_j^2) ** beta, where the
  sum stops at the first and last channel. This equals
  `tf.nn.local_response_normalization(x, depth_radius=n // 2, bias=k,
  alpha=alpha, beta=beta)`. The window sum is a matmul with a banded 0/1
  matrix. For the paper's beta = 0.75 the gradient is written by hand
  (`_lrn_bwd`), which saves XLA several passes over the maps.
  """
  if beta != 0.75:
    return local_response_norm_reference(x, k=k, n=n, alpha=alpha, beta=beta)
  return _lrn(x, k, n, alpha)


def _band(channels, n, dtype):
  """Returns the [channels, channels] 0/1 matrix of the LRN window, |i - j| <= n // 2."""
  index = jnp.arange(channels)
  return (jnp.abs(index[:, None] - index[None, :]) <= n // 2).astype(dtype)


def _power_minus_three_quarters(d):
  """Returns d ** -0.75 as rsqrt(d) * sqrt(rsqrt(d)), which XLA runs faster than `pow`."""
  inverse_root = lax.rsqrt(d)
  return inverse_root * jnp.sqrt(inverse_root)


def _lrn_fwd(x, k, n, alpha):
  band = _band(x.shape[-1], n, x.dtype)
  denominator = k + alpha * jnp.einsum('...c,cd->...d', x * x, band)
  return x * _power_minus_three_quarters(denominator), (x, denominator)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _lrn(x, k, n, alpha):
  return _lrn_fwd(x, k, n, alpha)[0]


def _lrn_bwd(k, n, alpha, residuals, g):
  """Returns the input gradient of b = a * d ** -0.75, d = k + alpha * window_sum(a ** 2).

  db_c/da_j = [c == j] * d_c ** -0.75
              - 1.5 * alpha * a_c * a_j * d_c ** -1.75 * [|c - j| <= n // 2],
  so the input gradient is g * d ** -0.75 - 1.5 * alpha * a * the window sum
  of g * a * d ** -1.75. The band matrix is symmetric, so the same matmul
  computes that window sum.
  """
  del k
  x, denominator = residuals
  scale = _power_minus_three_quarters(denominator)
  band = _band(x.shape[-1], n, x.dtype)
  spread = jnp.einsum('...c,cd->...d', g * x * scale / denominator, band)
  return (g * scale - (1.5 * alpha) * x * spread,)


_lrn.defvjp(_lrn_fwd, _lrn_bwd)


def max_pool_reference(x, window, stride):
  return lax.reduce_window(x, -jnp.inf, lax.max, (1, window, window, 1),
                           (1, stride, stride, 1), 'VALID')


def _offset_slice(x, i, j, stride, out_h, out_w):
  """Slices the input values at window offset (i, j) of every output pixel."""
  return lax.slice(x, (0, i, j, 0),
                   (x.shape[0], i + stride * (out_h - 1) + 1,
                    j + stride * (out_w - 1) + 1, x.shape[3]),
                   (1, stride, stride, 1))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def max_pool(x, window, stride):
  """Max pooling over NHWC maps, 'VALID' windows; equal to `max_pool_reference`."""
  return max_pool_reference(x, window, stride)


def _max_pool_fwd(x, window, stride):
  # A maximum of strided slices would run alone about 4x faster than
  # reduce_window, but XLA then fuses it into the gradient's loops and
  # recomputes it there, which made forward plus backward 1.5-2x slower.
  y = max_pool_reference(x, window, stride)
  return y, (x, y)


def _max_pool_bwd(window, stride, residuals, g):
  """Routes each output's gradient to the first maximum of its window.

  Offsets are visited in row-major order, as XLA's select-and-scatter visits
  them, so ties resolve to the same input. The gradient is assembled by
  stride phase: input row stride * m + r receives, from window offset
  i = r + stride * t, the gradient of output row m - t. Each phase is a sum
  of shifted output-sized arrays, and one interleave of the phases gives the
  input-sized gradient. Scattering each offset into an input-sized array
  instead costs window**2 passes over the larger array.
  """
  x, y = residuals
  batch, height, width, channels = x.shape
  _, out_h, out_w, _ = y.shape
  reach = (window - 1) // stride  # Largest shift t of an offset.
  rows, cols = out_h + reach, out_w + reach  # Phase sizes.
  taken = jnp.zeros(y.shape, bool)
  phases = {}
  for i, j in itertools.product(range(window), repeat=2):
    hit = (_offset_slice(x, i, j, stride, out_h, out_w) == y) & ~taken
    taken = taken | hit
    t, u = i // stride, j // stride
    part = jnp.pad(jnp.where(hit, g, 0),
                   ((0, 0), (t, rows - out_h - t), (u, cols - out_w - u),
                    (0, 0)))
    key = (i % stride, j % stride)
    phases[key] = part if key not in phases else phases[key] + part
  zero = jnp.zeros((batch, rows, cols, channels), g.dtype)
  grid = jnp.stack([jnp.stack([phases.get((r, c), zero)
                               for c in range(stride)], axis=3)
                    for r in range(stride)], axis=2)
  dx = grid.reshape(batch, rows * stride, cols * stride, channels)
  dx = dx[:, :height, :width]
  return (jnp.pad(dx, ((0, 0), (0, height - dx.shape[1]),
                       (0, width - dx.shape[2]), (0, 0))),)


max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)
