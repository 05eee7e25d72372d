r"""Plots the loss, top-1 and top-5 error and learning rate of a run from metrics.jsonl.

    python -m alexnet_jax.tools.curves --workdir=/tmp/digits
"""

import os

from absl import app
from absl import flags
from matplotlib import pyplot as plt

from alexnet_jax import metrics as metrics_lib

FLAGS = flags.FLAGS

PANELS = (
    ('loss', ('train_loss', 'eval_loss')),
    ('error', ('train_top1_error', 'train_top5_error', 'eval_top1_error',
               'eval_top5_error')),
    ('learning rate', ('learning_rate',)),
)


def series(records, name):
  """Returns the (steps, values) of one metric."""
  points = [(r['step'], r[name]) for r in records if name in r]
  return [p[0] for p in points], [p[1] for p in points]


def render(workdir, output=None) -> str:
  """Draws the curves of the run in `workdir` and returns the PNG's path."""
  records = metrics_lib.read_metrics(workdir)
  if not records:
    raise FileNotFoundError(
        f'No metrics in {os.path.join(workdir, "metrics.jsonl")}. Train with '
        f'main.py --workdir={workdir} first.')
  fig, axes = plt.subplots(1, len(PANELS), figsize=(15, 4))
  for axis, (title, names) in zip(axes, PANELS):
    for name in names:
      steps, values = series(records, name)
      if steps:
        axis.plot(steps, values, marker='.', label=name)
    axis.set_title(title)
    axis.set_xlabel('step')
    axis.legend()
  axes[2].set_yscale('log')
  fig.tight_layout()
  path = output or os.path.join(workdir, 'curves.png')
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def define_flags():
  """Defines the command-line flags; only the command itself calls this."""
  flags.DEFINE_string('workdir', None, 'Workdir of a run.')
  flags.DEFINE_string('output', None, 'PNG to write; default workdir/curves.png.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  print(f'Curves written to {render(FLAGS.workdir, FLAGS.output)}')


if __name__ == '__main__':
  define_flags()
  flags.mark_flags_as_required(['workdir'])
  app.run(main)
