r"""Draws the conv1 kernels of a trained run, one block per column (the paper's Fig. 3).

Krizhevsky et al. (2012) show that one column learns largely colour-agnostic
kernels and the other colour-specific ones. Each kernel is scaled to [0, 1] on
its own for display, and the tool prints each column's colourfulness: the mean
absolute difference between a displayed kernel and its grey version (the mean
of its RGB channels). A grey kernel scores 0.

    python -m alexnet_jax.tools.filters --workdir=/tmp/digits
"""

import math
import os

import jax
import numpy as np
from absl import app
from absl import flags
from matplotlib import pyplot as plt

from alexnet_jax.tools import run_files

FLAGS = flags.FLAGS


def normalize(kernels):
  """Scales each kernel of [n, h, w, 3] to [0, 1] on its own."""
  low = kernels.min(axis=(1, 2, 3), keepdims=True)
  high = kernels.max(axis=(1, 2, 3), keepdims=True)
  return (kernels - low) / np.maximum(high - low, 1e-12)


def colourfulness(kernels) -> float:
  """Returns the mean |kernel - grey(kernel)| of normalized [n, h, w, 3] kernels."""
  grey = kernels.mean(axis=-1, keepdims=True)
  return float(np.mean(np.abs(kernels - grey)))


def column_kernels(params):
  """Returns conv1's kernels as a list, per column, of normalized [n, h, w, 3] arrays."""
  kernel = np.asarray(jax.device_get(params['conv1']['kernel']))
  # [columns, h, w, 3, n] -> per column [n, h, w, 3].
  return [normalize(np.moveaxis(column, -1, 0)) for column in kernel]


def tile(kernels, pad=1):
  """Arranges [n, h, w, 3] kernels in a near-square grid with white gaps."""
  n, h, w, _ = kernels.shape
  cols = math.ceil(math.sqrt(n))
  rows = math.ceil(n / cols)
  grid = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad, 3))
  for i, kernel in enumerate(kernels):
    r, c = divmod(i, cols)
    top, left = pad + r * (h + pad), pad + c * (w + pad)
    grid[top:top + h, left:left + w] = kernel
  return grid


def draw(columns, path):
  """Writes one block per column to `path`; returns the number of blocks."""
  fig, axes = plt.subplots(1, len(columns), figsize=(4 * len(columns), 4.4),
                           squeeze=False)
  for index, (axis, kernels) in enumerate(zip(axes[0], columns)):
    axis.imshow(tile(kernels), interpolation='nearest')
    axis.set_title(f'column {index}: colourfulness '
                   f'{colourfulness(kernels):.3f}')
    axis.axis('off')
  fig.suptitle('conv1 kernels')
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return len(columns)


def render(workdir, output=None) -> dict:
  """Draws the filters of the run in `workdir`; returns the path and scores."""
  _, _, params, _, step = run_files.load_run(workdir)
  columns = column_kernels(params)
  path = output or os.path.join(workdir, 'filters.png')
  blocks = draw(columns, path)
  return {'path': path, 'blocks': blocks, 'step': step,
          'colourfulness': [colourfulness(k) for k in columns]}


def define_flags():
  """Defines the command-line flags; only the command itself calls this."""
  flags.DEFINE_string('workdir', None, 'Workdir of a trained run.')
  flags.DEFINE_string('output', None, 'PNG to write; default workdir/filters.png.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  result = render(FLAGS.workdir, FLAGS.output)
  scores = ', '.join(f'column {i}: {s:.4f}'
                     for i, s in enumerate(result['colourfulness']))
  print(f'conv1 kernels at step {result["step"]} written to {result["path"]}. '
        f'Colourfulness (0 is grey): {scores}')


if __name__ == '__main__':
  define_flags()
  flags.mark_flags_as_required(['workdir'])
  app.run(main)
