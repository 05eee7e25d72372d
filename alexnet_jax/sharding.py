"""The device mesh and the shardings of parameters and batches.

The mesh has axes ('data', 'model'). The model's two columns are split over
'model'; each column's parameters carry the axis name in their metadata (see
`models.py`), and this module turns that metadata into `NamedSharding`s.
"""

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from alexnet_jax import models


def mesh_shape(mesh_config, device_count: int) -> tuple[int, int]:
  """Resolves (data, model) for `device_count` devices, with data = -1 meaning the rest.

  Raises:
    ValueError: if the mesh cannot be built, naming the device count and mesh.
  """
  data, model = mesh_config.data, mesh_config.model
  mesh = f'Mesh data={data} x model={model}'
  if model not in (1, models.NUM_COLUMNS):
    raise ValueError(
        f'mesh.model={model} is invalid: the two columns split over 1 or 2 '
        f'devices ({mesh}, {device_count} devices). Set '
        '--config.mesh.model=1 or 2.')
  if data == -1:
    if device_count % model:
      raise ValueError(
          f'{mesh} is invalid: model={model} does not divide the '
          f'{device_count} devices. Set --config.mesh.model=1, or on a CPU '
          f'pass --host_device_count={model} to main.py.')
    data = device_count // model
  if data < 1 or device_count % (data * model):
    raise ValueError(
        f'{mesh} is invalid: its {data * model} devices do not divide the '
        f'{device_count} devices. Set --config.mesh.data to a divisor of '
        f'{device_count // model}, or to -1 to use them all.')
  return data, model


def create_mesh(mesh_config, devices=None) -> Mesh:
  """Builds the ('data', 'model') mesh over `devices` (default: all devices)."""
  devices = jax.devices() if devices is None else devices
  data, model = mesh_shape(mesh_config, len(devices))
  if data * model == len(devices):
    return jax.make_mesh((data, model), (models.DATA_AXIS, models.COLUMN_AXIS),
                         axis_types=(AxisType.Auto,) * 2, devices=devices)
  grid = np.asarray(devices[:data * model]).reshape(data, model)
  return Mesh(grid, (models.DATA_AXIS, models.COLUMN_AXIS),
              axis_types=(AxisType.Auto,) * 2)


def param_specs(abstract_model) -> dict:
  """Returns the PartitionSpec of every parameter, as a pure dict."""
  state = nnx.state(abstract_model, nnx.Param)
  return nnx.to_pure_dict(nnx.get_partition_spec(state))


def param_shardings(mesh: Mesh, abstract_model) -> dict:
  return jax.tree.map(lambda spec: NamedSharding(mesh, spec),
                      param_specs(abstract_model),
                      is_leaf=lambda x: isinstance(x, P))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Shards the leading (batch) axis over 'data' and replicates it over 'model'."""
  return NamedSharding(mesh, P(models.DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def check_batch_size(batch_size: int, mesh: Mesh, name: str = 'batch_size'):
  """Raises unless the global batch divides over data-parallel devices and processes."""
  data = mesh.shape[models.DATA_AXIS]
  if batch_size <= 0 or batch_size % data:
    raise ValueError(
        f'{name}={batch_size} is not divisible by the {data} data-parallel '
        f'devices of the mesh. Set --config.{name} to a multiple of {data}.')
  processes = jax.process_count()
  if batch_size % processes:
    raise ValueError(
        f'{name}={batch_size} is not divisible by the {processes} processes. '
        f'Set --config.{name} to a multiple of {processes}.')


def process_batch_rows(mesh: Mesh, batch_size: int) -> tuple[int, int]:
  """Returns [start, end) of the global-batch rows that this process's devices hold.

  `shard_batch` expects exactly these rows from each process. With
  `jax.make_mesh`, the devices of one process fill whole `data` rows of the
  mesh, so process p holds the p-th block of batch_size / processes rows.

  Raises:
    ValueError: if the rows are not one contiguous block.
  """
  index_map = batch_sharding(mesh).addressable_devices_indices_map(
      (batch_size,))
  blocks = sorted({index[0].indices(batch_size)[:2]
                   for index in index_map.values()})
  start, end = blocks[0][0], blocks[-1][1]
  if sum(stop - first for first, stop in blocks) != end - start:
    raise ValueError(
        f'Process {jax.process_index()} feeds rows {blocks} of the global '
        'batch, which are not one contiguous block. Build the mesh so that '
        "each process's devices form whole rows of the 'data' axis.")
  return start, end


def shard_batch(batch, mesh: Mesh):
  """Assembles per-process numpy batches into global arrays sharded over 'data'."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
      batch)


# XLA's CPU backend runs convolutions and dots through YNNPACK by default. On
# the 2-core AVX-512 machine of docs/benchmarks.md, its own (Eigen)
# convolutions ran the forward and backward passes of conv2 to conv4 about 30%
# faster, while YNNPACK kept the dots faster, so convolutions leave YNNPACK.
# NOTE: the option name and value are those of jaxlib 0.10.2, which
# requirements.txt pins.
CPU_COMPILER_OPTIONS = {
    'xla_cpu_experimental_ynn_fusion_type':
        'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT',
}


def compiler_options(mesh: Mesh | None = None):
  """Returns the XLA options for programs on `mesh` (default: JAX's devices), CPU-only tuning."""
  device = jax.devices()[0] if mesh is None else mesh.devices.flat[0]
  if device.platform == 'cpu':
    return dict(CPU_COMPILER_OPTIONS)
  return None
