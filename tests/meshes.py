"""Tiny digits configurations and meshes over the forced host CPU devices."""

import functools

import jax
import jax.numpy as jnp

from alexnet_jax import sharding
from alexnet_jax import train
from configs import digits

MESHES = ((1, 1), (1, 2), (2, 1), (2, 2))


def tiny_config(data: int = 1, model: int = 1, batch_size: int = 8):
  """Returns the digits config at width 0.125 for a data x model mesh."""
  config = digits.get_config()
  config.model.width = 0.125  # conv 6-16-24-24-16 and fc 256 per column.
  config.batch_size = batch_size
  config.eval_batch_size = batch_size
  config.mesh.data = data
  config.mesh.model = model
  return config


def create_mesh(data: int, model: int):
  """Builds a data x model mesh over the first data * model devices."""
  config = tiny_config(data, model)
  return sharding.create_mesh(config.mesh, jax.devices()[:data * model])


@functools.cache
def compiled_train_step(data: int, model: int):
  """Compiles the real jitted train step once per mesh for the whole session.

  Returns:
    A dict with the config, mesh, fresh train state, state shardings,
    optimizer, compiled step (it donates the state) and its HLO text.
  """
  config = tiny_config(data, model)
  mesh = create_mesh(data, model)
  learning_rate_fn = train.create_learning_rate_fn(config, 10)
  optimizer = train.create_optimizer(config, learning_rate_fn)
  with jax.set_mesh(mesh):
    state, shardings, graphdef = train.create_train_state(config, mesh,
                                                          optimizer)
    step = train.jit_train_step(config, mesh, shardings, graphdef, optimizer,
                                learning_rate_fn)
    size = config.model.input_size
    batch_sharding = sharding.batch_sharding(mesh)
    batch = {
        'image': jax.ShapeDtypeStruct((config.batch_size, size, size, 3),
                                      jnp.uint8, sharding=batch_sharding),
        'offset': jax.ShapeDtypeStruct((config.batch_size, 3), jnp.float32,
                                       sharding=batch_sharding),
        'label': jax.ShapeDtypeStruct((config.batch_size,), jnp.int32,
                                      sharding=batch_sharding),
    }
    abstract_state = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
        state)
    compiled = step.lower(abstract_state, batch).compile()
  return {'config': config, 'mesh': mesh, 'state': state,
          'shardings': shardings, 'graphdef': graphdef,
          'optimizer': optimizer, 'step': compiled,
          'hlo': compiled.as_text()}
