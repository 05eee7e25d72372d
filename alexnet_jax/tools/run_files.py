"""Loading a trained run from its workdir: the saved config and the latest parameters."""

import json
import os

import jax
import ml_collections

from alexnet_jax import evaluation
from alexnet_jax import loop
from alexnet_jax import sharding


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """Reads `workdir/config.json`, which training writes at its start."""
  path = os.path.join(workdir, loop.CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(
        f'{path} not found. Train with main.py --workdir={workdir} first; the '
        'run writes its config there.')
  with open(path, encoding='utf-8') as f:
    return ml_collections.ConfigDict(json.load(f))


def host_mesh():
  """Returns a 1x1 mesh on the first device; either column count runs on it."""
  config = ml_collections.ConfigDict({'data': 1, 'model': 1})
  return sharding.create_mesh(config, devices=jax.devices()[:1])


def load_run(workdir: str):
  """Returns (config, mesh, params, graphdef, step) of the latest checkpoint."""
  config = load_config(workdir)
  config.mesh.data, config.mesh.model = 1, 1
  mesh = host_mesh()
  params, graphdef, step = evaluation.restore_params(config, workdir, mesh)
  return config, mesh, params, graphdef, step
