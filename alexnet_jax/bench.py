r"""Benchmarks the train step: images/s, step time, compile time, memory and MFU.

Synthetic batches live on the devices, so the figures leave out the input
pipeline. Every combination of --meshes, --batch_sizes and --dtypes runs the
real jitted train step of the config; --reference=torch also times the same
network in PyTorch on the CPU in the same process, and --layers prints the
forward+backward time of each layer beside PyTorch's.

    python -m alexnet_jax.bench --config=configs/ilsvrc2012.py \
        --host_device_count=2 --meshes=1x1,2x1,1x2 --batch_sizes=32 \
        --reference=torch --output=/tmp/bench.json
"""

import json
import os

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    'config', 'configs/ilsvrc2012.py', 'Run config; --config.FIELD overrides.')
_MESHES = flags.DEFINE_list('meshes', ['1x1'],
                            'Meshes to time, each DATAxMODEL.')
_BATCH_SIZES = flags.DEFINE_list('batch_sizes', None,
                                 'Global batch sizes (default: the config\'s).')
_DTYPES = flags.DEFINE_list('dtypes', None, "Compute dtypes, 'float32' or "
                            "'bfloat16' (default: the config's model.dtype).")
_WARMUP = flags.DEFINE_integer('warmup', 2, 'Untimed steps after compiling.')
_STEPS = flags.DEFINE_integer('steps', 5, 'Timed steps; the median is used.')
_PEAK_TFLOPS = flags.DEFINE_float(
    'peak_tflops', None, 'Peak TFLOP/s of one device in the compute dtype, '
    'for MFU; unset leaves MFU out.')
_REFERENCE = flags.DEFINE_enum(
    'reference', 'none', ['none', 'torch'],
    'Also time the PyTorch reference (CPU, float32) at each batch size.')
_LAYERS = flags.DEFINE_bool(
    'layers', False, 'Print per-layer forward+backward times (1 device), '
    'beside PyTorch\'s with --reference=torch.')
_HOST_DEVICE_COUNT = flags.DEFINE_integer(
    'host_device_count', None, 'Forces this many CPU devices (set before JAX '
    'starts); a mesh needs DATA*MODEL of them.')
_OUTPUT = flags.DEFINE_string('output', None, 'Path of the JSON report.')


def _format_rows(rows):
  header = (f'{"mesh":<6}{"batch":>6}{"dtype":>10}{"compile s":>11}'
            f'{"step s":>9}{"images/s":>10}{"TFLOP/s":>9}{"MFU":>7}'
            f'{"dev peak MB":>13}{"host RSS MB":>13}{"torch ratio":>13}')
  lines = [header]
  for r in rows:
    mfu = f'{r["mfu"]:.3f}' if r['mfu'] is not None else '-'
    dev = (f'{r["peak_device_bytes"] / 2**20:.0f}'
           if r['peak_device_bytes'] is not None else '-')
    ratio = (f'{r["torch_ratio"]:.2f}x' if r.get('torch_ratio') is not None
             else '-')
    lines.append(
        f'{r["mesh"]:<6}{r["batch_size"]:>6}{r["dtype"]:>10}'
        f'{r["compile_s"]:>11.1f}{r["step_time_s"]:>9.3f}'
        f'{r["images_per_second"]:>10.1f}{r["achieved_tflops"]:>9.3f}'
        f'{mfu:>7}{dev:>13}{r["host_peak_rss_bytes"] / 2**20:>13.0f}'
        f'{ratio:>13}')
  return '\n'.join(lines)


def _format_torch(torch_rows):
  lines = [f'PyTorch reference (CPU, float32, {len(torch_rows)} batch sizes)',
           f'{"batch":>6}{"step s":>9}{"images/s":>10}{"threads":>9}']
  for batch, r in sorted(torch_rows.items()):
    lines.append(f'{batch:>6}{r["step_time_s"]:>9.3f}'
                 f'{r["images_per_second"]:>10.1f}{r["threads"]:>9}')
  return '\n'.join(lines)


def _format_layers(jax_rows, torch_rows):
  lines = ['Per-layer forward+backward, median ms (JAX on 1 device)',
           f'{"layer":<8}{"input (NHWC)":<20}{"JAX ms":>10}{"torch ms":>10}'
           f'{"torch/JAX":>11}']
  torch_ms = {r['name']: r['forward_backward_ms'] for r in torch_rows or []}
  for r in jax_rows:
    shape = 'x'.join(str(d) for d in r['input_shape'])
    ms = r['forward_backward_ms']
    ref = torch_ms.get(r['name'])
    ref_text = f'{ref:>10.1f}{ref / ms:>10.2f}x' if ref else f'{"-":>10}'
    lines.append(f'{r["name"]:<8}{shape:<20}{ms:>10.1f}{ref_text}')
  jax_total = sum(r['forward_backward_ms'] for r in jax_rows)
  total = f'{"total":<28}{jax_total:>10.1f}'
  if torch_ms:
    torch_total = sum(torch_ms.values())
    total += f'{torch_total:>10.1f}{torch_total / jax_total:>10.2f}x'
  lines.append(total)
  return '\n'.join(lines)


def _torch_reference(config, batch_size):
  from alexnet_jax import torch_reference  # pylint: disable=g-import-not-at-top
  return torch_reference.time_train_step(
      batch_size=batch_size, input_size=config.model.input_size,
      num_classes=config.model.num_classes, warmup=_WARMUP.value,
      steps=_STEPS.value, lrn=config.model.lrn, width=config.model.width)


def _layer_rows(config, batch_size):
  """Returns (JAX rows, PyTorch rows or None) of the per-layer breakdown."""
  from alexnet_jax import layer_timing  # pylint: disable=g-import-not-at-top
  jax_rows = layer_timing.layer_breakdown(config.model, batch_size,
                                          warmup=_WARMUP.value,
                                          steps=_STEPS.value)
  torch_rows = None
  if _REFERENCE.value == 'torch':
    from alexnet_jax import torch_reference  # pylint: disable=g-import-not-at-top
    torch_rows = torch_reference.layer_breakdown(
        batch_size=batch_size, input_size=config.model.input_size,
        num_classes=config.model.num_classes, warmup=_WARMUP.value,
        steps=_STEPS.value, lrn=config.model.lrn, width=config.model.width)
  return jax_rows, torch_rows


def run(config):
  """Runs every requested measurement; returns the JSON-ready report."""
  # pylint: disable=g-import-not-at-top
  import jax
  from alexnet_jax import flops
  from alexnet_jax import step_timing
  # pylint: enable=g-import-not-at-top
  meshes = [step_timing.parse_mesh(m) for m in _MESHES.value]
  batch_sizes = [int(b) for b in _BATCH_SIZES.value or [config.batch_size]]
  dtypes = _DTYPES.value or [config.model.dtype]
  forward_macs = flops.check_paper_macs(config.model)

  torch_rows, rows = {}, []
  for batch_size in batch_sizes:
    if _REFERENCE.value == 'torch':
      torch_rows[batch_size] = _torch_reference(config, batch_size)
    for dtype in dtypes:
      for mesh in meshes:
        run_config = config.copy_and_resolve_references()
        run_config.batch_size, run_config.model.dtype = batch_size, dtype
        row = step_timing.time_train_step(
            run_config, mesh, warmup=_WARMUP.value, steps=_STEPS.value,
            peak_tflops=_PEAK_TFLOPS.value)
        if batch_size in torch_rows:
          row['torch_ratio'] = (row['images_per_second'] /
                                torch_rows[batch_size]['images_per_second'])
        rows.append(row)

  report = {'jax_version': jax.__version__,
            'forward_macs_per_image': forward_macs,
            'peak_tflops': _PEAK_TFLOPS.value, 'runs': rows,
            'torch': list(torch_rows.values())}
  if _LAYERS.value:
    report['layers'], report['torch_layers'] = _layer_rows(
        config, batch_sizes[0])
  return report


def format_report(report):
  """Formats the report as the text tables the command prints."""
  parts = [f'Forward multiply-adds per image: '
           f'{report["forward_macs_per_image"] / 1e9:.3f} G',
           _format_rows(report['runs'])]
  if report['torch']:
    parts.append(_format_torch({r['batch_size']: r for r in report['torch']}))
  if 'layers' in report:
    parts.append(_format_layers(report['layers'], report['torch_layers']))
  return '\n\n'.join(parts)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if _HOST_DEVICE_COUNT.value:
    os.environ['XLA_FLAGS'] = (
        os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_'
        f'count={_HOST_DEVICE_COUNT.value}')
  report = run(_CONFIG.value)
  if _OUTPUT.value:
    with open(_OUTPUT.value, 'w') as f:
      json.dump(report, f, indent=2)
    logging.info('Wrote %s.', _OUTPUT.value)
  print(format_report(report))


if __name__ == '__main__':
  app.run(main)
