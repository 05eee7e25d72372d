"""The parameter table: per layer and per column, with shapes, counts, shardings and bytes per device.

It is computed from `jax.eval_shape`, so it needs no data and allocates no
parameters.
"""

import math

import numpy as np
from flax import nnx

from alexnet_jax import models
from alexnet_jax import sharding
from alexnet_jax import train


def flatten(tree, prefix=''):
  """Yields ('layer/name', leaf) pairs of a nested dict, depth first."""
  for key, value in tree.items():
    path = f'{prefix}/{key}' if prefix else key
    if isinstance(value, dict):
      yield from flatten(value, path)
    else:
      yield path, value


def parameter_rows(config, mesh):
  """Returns one row per parameter with its shape, count, spec and per-column count."""
  _, abstract_model = train.model_graph(config)
  columns = abstract_model.geometry.columns
  params = nnx.to_pure_dict(nnx.state(abstract_model,
                                                  nnx.Param))
  specs = dict(flatten(sharding.param_specs(abstract_model)))
  rows = []
  for path, leaf in flatten(params):
    spec = specs[path]
    count = math.prod(leaf.shape)
    split = len(spec) > 0 and spec[0] == models.COLUMN_AXIS
    rows.append({
        'name': path, 'shape': tuple(leaf.shape), 'count': count,
        'spec': spec, 'per_column': count // columns if split
                                    else None,
        'bytes_per_device': _bytes_per_device(leaf, spec, mesh),
    })
  return rows


def _bytes_per_device(leaf, spec, mesh):
  shards = 1
  for axis in spec:
    if axis is not None:
      shards *= mesh.shape[axis]
  return math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize // shards


def format_table(config, mesh) -> str:
  """Renders the parameter table and totals as text."""
  models.check_mesh(models.geometry(config.model), mesh)
  rows = parameter_rows(config, mesh)
  lines = [f'{"parameter":<14} {"shape":<26} {"count":>12} {"per column":>12} '
           f'{"sharding":<28} {"bytes/device":>13}']
  for row in rows:
    per_column = f'{row["per_column"]:,}' if row['per_column'] else 'replicated'
    lines.append(
        f'{row["name"]:<14} {str(row["shape"]):<26} {row["count"]:>12,} '
        f'{per_column:>12} {str(row["spec"]):<28} '
        f'{row["bytes_per_device"]:>13,}')
  total = sum(r['count'] for r in rows)
  per_device = sum(r['bytes_per_device'] for r in rows)
  geom = models.geometry(config.model)
  lines += [
      f'Total parameters: {total:,}',
      f'Mesh: data={mesh.shape[models.DATA_AXIS]} x '
      f'model={mesh.shape[models.COLUMN_AXIS]} over {mesh.size} devices',
      f'Parameter bytes per device: {per_device:,} '
      f'(float32; all parameters: {total * 4:,})',
      f'Cross-column traffic per image and column: '
      f'{models.cross_column_bytes(geom):,} bytes forward, '
      f'{models.cross_column_bytes(geom, backward=True):,} bytes backward',
  ]
  return '\n'.join(lines)


def total_parameters(config) -> int:
  _, abstract_model = train.model_graph(config)
  return models.count_params(nnx.state(abstract_model, nnx.Param))

