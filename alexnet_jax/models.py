"""The paper's two-column AlexNet in Flax NNX.

Every layer is split into two halves, the paper's columns, and each column's
parameters are stacked on a leading axis of size `NUM_COLUMNS`. That axis is
sharded over the `model` mesh axis, so with `mesh.model = 2` column c lives on
the devices at `model` index c, as on the paper's two GPUs.

The forward pass runs under `jax.shard_map`. Inside it each device loops over
the columns it stores (two on a `model = 1` mesh, one on a `model = 2` mesh)
with plain convolutions. XLA's CPU grouped convolution is several times slower
than two plain half-size convolutions, and a batch-sharded grouped convolution
can gather the batch, so the columns are never expressed as
`feature_group_count=2`. conv1, LRN and max pooling take the forms in
`layers` that XLA runs fastest on the CPU, each equal to its plain form.

The columns talk only where the paper wires them together (Krizhevsky et al.,
2012, Fig. 2):

- conv3 reads both columns' pool2 maps,
- fc6 reads both columns' pool5 maps,
- fc7 reads both columns' fc6 outputs,
- fc8 reads both columns' fc7 outputs.

At each of these a tiled `all_gather` over `model` concatenates the columns on
the channel axis. In the backward pass the transposes of the conv3, fc6 and
fc7 gathers are reduce-scatters. fc8's input is gathered as a value identical
on every `model` device, so its gradient is too, and its transpose is a local
slice with no exchange. At the paper's size each column receives, per image,
13*13*128 + 6*6*128 + 2048 + 2048 float32 values (121,344 bytes) in the
forward pass and 13*13*128 + 6*6*128 + 2048 values (113,152 bytes) in the
backward pass; `cross_column_bytes` computes both for any configuration.

fc8 is replicated, not split. Its input is already gathered for fc7's output,
so every device holds the full 4096-vector, and a replicated fc8 (4.1M
parameters, 16 MB) then yields whole logits for the softmax with no further
exchange. Splitting it by class would add a gather of the logits.
"""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax
from jax.sharding import PartitionSpec as P

from alexnet_jax import layers

NUM_COLUMNS = 2
COLUMN_AXIS = 'model'
DATA_AXIS = 'data'

# Per-column widths of the paper's network.
CONV_FEATURES = (48, 128, 192, 192, 128)
FC_FEATURES = 2048

# The fast CPU forms of LRN and max pooling (see `layers`), each equal to its
# plain form. The LRN constants are there too.
local_response_norm = layers.local_response_norm
max_pool = layers.max_pool


@dataclasses.dataclass(frozen=True)
class Geometry:
  """Static layer sizes of one model configuration."""

  input_size: int
  conv1_padding: tuple[int, int]
  conv: tuple[int, ...]  # Per-column channels of conv1..conv5.
  fc: int  # Per-column outputs of fc6 and fc7.
  num_classes: int
  pool_window: int
  pool_stride: int
  spatial: tuple[int, ...]  # Map sizes after conv1, pool1, pool2 and pool5.
  columns: int = NUM_COLUMNS  # 2 for the paper's network, 1 for its one-column comparison.

  @property
  def fc6_inputs(self) -> int:
    return self.spatial[3] ** 2 * self.conv[4] * self.columns


def conv1_padding(input_size: int) -> tuple[int, int]:
  """Returns the least padding that makes conv1's 11x11/4 windows tile the input.

  227 needs none. 224 gets (1, 2), so conv1 still gives the paper's 55x55 map.
  """
  total = (-(input_size - 11)) % 4
  return total // 2, total - total // 2


def _pool_size(size: int, window: int, stride: int) -> int:
  return (size - window) // stride + 1


def geometry(model_config) -> Geometry:
  """Computes the layer sizes for a model config, raising if the input is too small."""
  size = model_config.input_size
  pad = conv1_padding(size)
  window, stride = model_config.pool_window, model_config.pool_stride
  c1 = (size + sum(pad) - 11) // 4 + 1
  p1 = _pool_size(c1, window, stride)
  p2 = _pool_size(p1, window, stride)
  p5 = _pool_size(p2, window, stride)
  if p5 < 1:
    raise ValueError(
        f'model.input_size={size} is too small for pooling {window}/{stride}: '
        f'pool5 would be {p5}x{p5}. Use an input size of at least 67.')
  columns = model_config.get('columns', NUM_COLUMNS)
  if columns not in (1, NUM_COLUMNS):
    raise ValueError(
        f'model.columns={columns} is invalid: use 2 (the paper\'s network) or '
        '1 (its one-column comparison network).')
  width = model_config.width
  conv = tuple(max(1, round(c * width)) for c in CONV_FEATURES)
  return Geometry(
      input_size=size, conv1_padding=pad, conv=conv,
      fc=max(1, round(FC_FEATURES * width)),
      num_classes=model_config.num_classes, pool_window=window,
      pool_stride=stride, spatial=(c1, p1, p2, p5), columns=columns)


def check_mesh(geom: Geometry, mesh) -> None:
  """Raises ValueError if a one-column model is given a split `model` axis."""
  model = mesh.shape[COLUMN_AXIS]
  if geom.columns == 1 and model != 1:
    raise ValueError(
        f'model.columns=1 runs on one device per replica, but the mesh has '
        f'model={model}. Set --config.mesh.model=1.')


def cross_column_bytes(geom: Geometry, dtype_bytes: int = 4, *,
                       backward: bool = False) -> int:
  """Returns the bytes one column receives from the other per image.

  Forward, these are the other column's halves of the inputs of conv3, fc6,
  fc7 and fc8. Backward, the gradients of the conv3, fc6 and fc7 inputs come
  back through reduce-scatters. fc8's input gradient is identical on every
  column device, so it needs no exchange. A one-column network sends nothing.
  """
  if geom.columns == 1:
    return 0
  values = (geom.spatial[2] ** 2 * geom.conv[1] + geom.spatial[3] ** 2 *
            geom.conv[4] + geom.fc)
  if not backward:
    values += geom.fc
  return values * dtype_bytes


def _param(init, key, shape, sharding):
  return nnx.Param(init(key, shape, jnp.float32), out_sharding=sharding,
                   eager_sharding=False)


class ColumnConv(nnx.Module):
  """One convolution per column, kernels stacked on a leading column axis."""

  def __init__(self, kernel_size, in_features, out_features, *, columns,
               weight_std, bias_init, rngs):
    shape = (columns, kernel_size, kernel_size, in_features, out_features)
    sharding = (COLUMN_AXIS, None, None, None, None)
    self.kernel = _param(nnx.initializers.normal(weight_std), rngs.params(),
                         shape, sharding)
    self.bias = _param(nnx.initializers.constant(bias_init), rngs.params(),
                       (columns, out_features), (COLUMN_AXIS, None))


class ColumnDense(nnx.Module):
  """One dense layer per column, split by output neuron."""

  def __init__(self, in_features, out_features, *, columns, weight_std,
               bias_init, rngs):
    self.kernel = _param(nnx.initializers.normal(weight_std), rngs.params(),
                         (columns, in_features, out_features),
                         (COLUMN_AXIS, None, None))
    self.bias = _param(nnx.initializers.constant(bias_init), rngs.params(),
                       (columns, out_features), (COLUMN_AXIS, None))


class Dense(nnx.Module):
  """A dense layer replicated on every device."""

  def __init__(self, in_features, out_features, *, weight_std, bias_init,
               rngs):
    self.kernel = _param(nnx.initializers.normal(weight_std), rngs.params(),
                         (in_features, out_features), (None, None))
    self.bias = _param(nnx.initializers.constant(bias_init), rngs.params(),
                       (out_features,), (None,))


class AlexNet(nnx.Module):
  """The paper's two-column AlexNet; call it on NHWC images in a mesh context.

  Initial biases follow the paper: 0 for conv1, conv3 and fc8, and
  `model.bias_one` (the paper's 1) for conv2, conv4, conv5, fc6 and fc7.

  With `model.columns = 1` it is the paper's comparison network: a single
  column with the per-column widths (48-128-192-192-128 kernels, fc6 and fc7
  of 2048), where conv3, fc6, fc7 and fc8 read that one column.
  """

  def __init__(self, model_config, *, rngs: nnx.Rngs):
    self.config = model_config
    self.geometry = geom = geometry(model_config)
    std, one = model_config.weight_std, model_config.bias_one
    c1, c2, c3, c4, c5 = geom.conv
    columns = geom.columns
    layer = functools.partial(ColumnConv, columns=columns, weight_std=std,
                              rngs=rngs)
    self.conv1 = layer(11, 3, c1, bias_init=0.0)
    self.conv2 = layer(5, c1, c2, bias_init=one)
    self.conv3 = layer(3, columns * c2, c3, bias_init=0.0)
    self.conv4 = layer(3, c3, c4, bias_init=one)
    self.conv5 = layer(3, c4, c5, bias_init=one)
    dense = functools.partial(ColumnDense, columns=columns, weight_std=std,
                              rngs=rngs)
    self.fc6 = dense(geom.fc6_inputs, geom.fc, bias_init=one)
    self.fc7 = dense(columns * geom.fc, geom.fc, bias_init=one)
    self.fc8 = Dense(columns * geom.fc, geom.num_classes, weight_std=std,
                     bias_init=0.0, rngs=rngs)

  def __call__(self, images, *, dropout_masks=None, capture_fc7=False):
    """Computes float32 logits for a batch of NHWC images.

    Args:
      images: [batch, size, size, 3] float array, sharded over `data`.
      dropout_masks: None for evaluation, or a pair of keep masks for fc6 and
        fc7, each [batch, columns, fc] (see `dropout_masks`).
      capture_fc7: also return the fc7 activations, [batch, columns * fc].

    Returns:
      Logits [batch, num_classes], and the fc7 activations if requested.
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
      raise ValueError('AlexNet must be called inside `jax.set_mesh(mesh)` '
                       "with axes ('data', 'model').")
    check_mesh(self.geometry, mesh)
    params = nnx.to_pure_dict(nnx.state(self, nnx.Param))
    specs = jax.tree.map(lambda _: P(COLUMN_AXIS), params)
    specs['fc8'] = {'kernel': P(), 'bias': P()}
    train = dropout_masks is not None
    masks = dropout_masks if train else ()
    mask_specs = (P(DATA_AXIS, COLUMN_AXIS),) * 2 if train else ()
    fc7_spec = (P(DATA_AXIS),) if capture_fc7 else ()
    forward = functools.partial(
        _forward, geom=self.geometry, lrn=self.config.lrn,
        dropout_rate=self.config.dropout_rate,
        dtype=jnp.dtype(self.config.dtype), capture_fc7=capture_fc7)
    if mesh.size == 1:
      # One device computes every column and example, so nothing needs
      # exchanging, and single-device collectives would still copy their data.
      outputs = forward(params, images, masks, exchange=False)
      return outputs if capture_fc7 else outputs[0]
    outputs = jax.shard_map(
        forward, mesh=mesh,
        in_specs=(specs, P(DATA_AXIS), mask_specs),
        out_specs=(P(DATA_AXIS),) + fc7_spec)(params, images, masks)
    return outputs if capture_fc7 else outputs[0]


def dropout_masks(key, batch_size, geom: Geometry, rate: float):
  """Draws the fc6 and fc7 keep masks for a global batch.

  The masks are drawn for the global batch shape, outside `shard_map`. With
  JAX's partitionable threefry (the default) each example's mask depends only on
  the key and the example's position, so every mesh draws the same masks.
  """
  keep = 1.0 - rate
  shape = (batch_size, geom.columns, geom.fc)
  k6, k7 = jax.random.split(key)
  return (jax.random.bernoulli(k6, keep, shape),
          jax.random.bernoulli(k7, keep, shape))


def _conv(x, kernel, bias, stride, padding):
  y = lax.conv_general_dilated(x, kernel, (stride, stride), padding,
                               dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  return y + bias


def _gather_columns(local_maps, exchange, to='varying'):
  """Concatenates every column's maps on the last axis, across devices if `exchange`."""
  local = jnp.concatenate(local_maps, axis=-1)
  if not exchange:
    return local
  return lax.all_gather(local, COLUMN_AXIS, axis=local.ndim - 1, tiled=True,
                        to=to)


def _all_columns(x, kernel, bias, stride, padding):
  """Applies every local column's kernel to one shared input in one convolution."""
  columns = kernel.shape[0]
  fused = jnp.concatenate(list(kernel), axis=-1)
  y = _conv(x, fused, jnp.concatenate(list(bias)), stride, padding)
  return jnp.split(y, columns, axis=-1)


def _column_dense(x, kernel):
  """Multiplies [batch, in] by each local column's [in, out] kernel: [columns, batch, out].

  The input is broadcast along the column axis so that the column is a batch
  dimension of the matmul. Each column's kernel is then used in its stored
  layout, in the forward pass and in both gradients, where contracting the
  stacked kernel directly (`'bi,cio->bco'`) makes XLA transpose all of it
  on every step.
  """
  stacked = jnp.broadcast_to(x, (kernel.shape[0],) + x.shape)
  return jnp.einsum('cbi,cio->cbo', stacked, kernel)


def _conv_layers(p, x, geom, lrn, exchange):
  """Runs conv1 to pool5 and returns each local column's pool5 maps."""
  pool = functools.partial(max_pool, window=geom.pool_window,
                           stride=geom.pool_stride)
  norm = local_response_norm if lrn else (lambda a: a)
  scope = jax.named_scope
  # conv1 (11x11, stride 4): both columns read the whole image, so one
  # convolution computes both.
  with scope('conv1'):
    h = _all_columns(x, p['conv1']['kernel'], p['conv1']['bias'], 4,
                     (geom.conv1_padding,) * 2)
    h = [jax.nn.relu(c) for c in h]
  with scope('lrn1'):
    h = [norm(c) for c in h]
  with scope('pool1'):
    h = [pool(c) for c in h]

  # conv2: column-local.
  with scope('conv2'):
    h = [jax.nn.relu(_conv(c, k, b, 1, 'SAME'))
         for c, k, b in zip(h, p['conv2']['kernel'], p['conv2']['bias'])]
  with scope('lrn2'):
    h = [norm(c) for c in h]
  with scope('pool2'):
    h = [pool(c) for c in h]

  # conv3 reads both columns.
  with scope('conv3'):
    h = _all_columns(_gather_columns(h, exchange), p['conv3']['kernel'],
                     p['conv3']['bias'], 1, 'SAME')
    h = [jax.nn.relu(c) for c in h]

  # conv4 and conv5: column-local.
  for name in ('conv4', 'conv5'):
    with scope(name):
      h = [jax.nn.relu(_conv(c, k, b, 1, 'SAME'))
           for c, k, b in zip(h, p[name]['kernel'], p[name]['bias'])]
  with scope('pool5'):
    return [pool(c) for c in h]


def _forward(params, images, masks, *, geom, lrn, dropout_rate, dtype,
             capture_fc7, exchange=True):
  """Runs the network on one device's batch shard and its local columns.

  With `exchange` (inside `shard_map`) each layer that reads both columns
  gathers them over `model`. Without it every column is local, as on a
  one-device mesh, and the gathers are plain concatenations.

  Every op runs in a `jax.named_scope` of its layer (conv1, lrn1, pool1, ...,
  fc8), so the op_name metadata of the compiled HLO names the layer, in the
  forward and the backward pass. The gather of a layer's input from both
  columns is scoped by the layer that reads it.
  """
  p = jax.tree.map(lambda a: a.astype(dtype), params)
  scope = jax.named_scope
  h = _conv_layers(p, images.astype(dtype), geom, lrn, exchange)

  # fc6 reads both columns' pool5 maps, flattened as (height, width, channel)
  # with the channels of column 0 first.
  with scope('fc6'):
    x = _gather_columns(h, exchange)
    x = x.reshape(x.shape[0], -1)
  for index, name in enumerate(('fc6', 'fc7')):
    with scope(name):
      kernel, bias = p[name]['kernel'], p[name]['bias']
      y = _column_dense(x, kernel) + bias[:, None, :]
      y = jax.nn.relu(y)
      if masks:
        keep = jnp.moveaxis(masks[index], 1, 0)
        y = jnp.where(keep, y / (1.0 - dropout_rate), 0).astype(dtype)
    # fc7 and fc8 read both columns. fc8 is replicated, so its input is
    # gathered as a value identical on every `model` device.
    to = 'varying' if name == 'fc6' else 'invarying'
    with scope('fc7' if name == 'fc6' else 'fc8'):
      x = _gather_columns(list(y), exchange, to=to)
  fc7 = x
  with scope('fc8'):
    logits = x @ p['fc8']['kernel'] + p['fc8']['bias']
  logits = logits.astype(jnp.float32)
  return (logits, fc7.astype(jnp.float32)) if capture_fc7 else (logits,)


def count_params(tree) -> int:
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def create_model(model_config, seed: int) -> AlexNet:
  return AlexNet(model_config, rngs=nnx.Rngs(params=seed))

