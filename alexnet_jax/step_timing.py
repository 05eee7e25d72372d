"""Times the real jitted train step on synthetic, device-resident batches.

The step is `train.jit_train_step` itself, with its shardings, donated state
and the paper's optimizer, so the figures are those of a training run without
the input pipeline.
"""

import math
import resource
import statistics
import time

import jax
import jax.numpy as jnp
from absl import logging

from alexnet_jax import flops
from alexnet_jax import sharding
from alexnet_jax import train


def parse_mesh(text: str) -> tuple[int, int]:
  """Parses 'DATAxMODEL' (for example '2x1') into (data, model)."""
  parts = text.lower().split('x')
  if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
    raise ValueError(f'Invalid mesh {text!r}: write it as DATAxMODEL, for '
                     'example 1x1, 2x1 or 1x2.')
  return int(parts[0]), int(parts[1])


def _synthetic_batch(config, mesh, batch_size):
  """Returns a random batch created directly in its sharding on the devices."""
  size, classes = config.model.input_size, config.model.num_classes

  def make():
    image_key, offset_key, label_key = jax.random.split(jax.random.key(0), 3)
    return {
        'image': jax.random.randint(image_key, (batch_size, size, size, 3), 0,
                                    256).astype(jnp.uint8),
        'offset': jax.random.normal(offset_key, (batch_size, 3)) - 114.0,
        'label': jax.random.randint(label_key, (batch_size,), 0, classes),
    }

  return jax.jit(make, out_shardings=sharding.batch_sharding(mesh))()


def _peak_device_bytes(mesh):
  """Returns the largest peak_bytes_in_use over the mesh's devices, or None.

  The CPU client reports no memory statistics, so this is None there.
  """
  peaks = []
  for device in mesh.devices.flat:
    stats = device.memory_stats()
    if stats and 'peak_bytes_in_use' in stats:
      peaks.append(stats['peak_bytes_in_use'])
  return max(peaks) if peaks else None


def host_peak_rss_bytes() -> int:
  """Returns this process's peak resident set size so far (Linux reports KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _float_dtypes(tree):
  """Returns the sorted dtype names of the floating-point leaves of `tree`."""
  return sorted({str(x.dtype) for x in jax.tree.leaves(tree)
                 if jax.numpy.issubdtype(x.dtype, jax.numpy.floating)})


def _setup(config, mesh):
  learning_rate_fn = train.create_learning_rate_fn(config, 1000)
  optimizer = train.create_optimizer(config, learning_rate_fn)
  state, shardings, graphdef = train.create_train_state(config, mesh,
                                                        optimizer)
  step = train.jit_train_step(config, mesh, shardings, graphdef, optimizer,
                              learning_rate_fn)
  return state, step


def _create_mesh(config):
  """Builds the config's mesh on the first data * model devices."""
  data, model = config.mesh.data, config.mesh.model
  devices = jax.devices()[:data * model]
  if len(devices) < data * model:
    raise ValueError(
        f'Mesh {data}x{model} needs {data * model} devices but '
        f'{len(jax.devices())} are visible. Pass --host_device_count='
        f'{data * model} on the CPU.')
  mesh = sharding.create_mesh(config.mesh, devices)
  sharding.check_batch_size(config.batch_size, mesh)
  return mesh


def _run_steps(compiled, state, batch, warmup, steps):
  """Runs warm-up then timed steps; returns the state, durations and losses."""
  for _ in range(warmup):
    state, metrics = compiled(state, batch)
  jax.block_until_ready(state)
  durations, losses = [], []
  for _ in range(steps):
    start = time.perf_counter()
    state, metrics = compiled(state, batch)
    jax.block_until_ready((state, metrics))
    durations.append(time.perf_counter() - start)
    losses.append(float(metrics['train_loss']))
  bad = [loss for loss in losses if not math.isfinite(loss)]
  if bad:
    raise FloatingPointError(f'A timed step gave the non-finite loss {bad[0]}.')
  return state, durations, losses, metrics


def time_train_step(config, mesh_shape, *, warmup=2, steps=5,
                    peak_tflops=None):
  """Compiles and times `train.jit_train_step` for one config on one mesh.

  Args:
    config: the full run config; batch_size and model.dtype are used as set.
    mesh_shape: (data, model); the mesh takes the first data * model devices.
    warmup: untimed steps after compilation.
    steps: timed steps; the step time is their median.
    peak_tflops: the devices' peak in TFLOP/s each, for MFU; None skips it.

  Returns:
    A dict of the figures, ready for JSON.
  """
  if steps < 1:
    raise ValueError(f'steps={steps} must be at least 1.')
  data, model = mesh_shape
  config = config.copy_and_resolve_references()
  config.mesh.data, config.mesh.model = data, model
  mesh = _create_mesh(config)
  devices = list(mesh.devices.flat)
  with jax.set_mesh(mesh):
    state, step = _setup(config, mesh)
    batch = _synthetic_batch(config, mesh, config.batch_size)
    start = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    compile_s = time.perf_counter() - start
    state, durations, losses, metrics = _run_steps(compiled, state, batch,
                                                   warmup, steps)
  step_time = statistics.median(durations)
  flops_per_image = flops.train_flops_per_image(config.model)
  achieved = flops_per_image * config.batch_size / step_time
  result = {
      'mesh': f'{data}x{model}',
      'devices': data * model,
      'platform': devices[0].platform,
      'batch_size': config.batch_size,
      'dtype': config.model.dtype,
      'input_size': config.model.input_size,
      'width': config.model.width,
      'lrn': config.model.lrn,
      'compile_s': compile_s,
      'step_time_s': step_time,
      'step_times_s': durations,
      'images_per_second': config.batch_size / step_time,
      'losses': losses,
      'loss_dtype': str(metrics['train_loss'].dtype),
      'param_dtypes': _float_dtypes(state.params),
      'opt_state_dtypes': _float_dtypes(state.opt_state),
      'train_flops_per_image': flops_per_image,
      'achieved_tflops': achieved / 1e12,
      'mfu': (achieved / (peak_tflops * 1e12 * data * model)
              if peak_tflops else None),
      'peak_device_bytes': _peak_device_bytes(mesh),
      'host_peak_rss_bytes': host_peak_rss_bytes(),
  }
  logging.info('Mesh %s, batch %d, %s: compile %.1f s, step %.3f s, '
               '%.1f images/s.', result['mesh'], config.batch_size,
               config.model.dtype, compile_s, step_time,
               result['images_per_second'])
  return result

