r"""Writes `report.md` for a run: config, final errors beside the paper's, curves and filters.

The report links `curves.png` and `filters.png`, which it draws into the
workdir, and lists every `eval_*.json` that `main.py --mode=eval` wrote.

    python -m alexnet_jax.tools.report --workdir=/tmp/digits
"""

import glob
import json
import os

from absl import app
from absl import flags

from alexnet_jax import evaluation
from alexnet_jax import metrics as metrics_lib
from alexnet_jax.tools import curves
from alexnet_jax.tools import filters
from alexnet_jax.tools import run_files

FLAGS = flags.FLAGS

REPORT_FILE = 'report.md'


def _error_rows(workdir, config):
  """Returns the table rows: the last evaluation, saved evaluations, then the paper's."""
  rows = []
  evals = [r for r in metrics_lib.read_metrics(workdir)
           if 'eval_top1_error' in r]
  if evals:
    last = evals[-1]
    rows.append((f'this run, step {last["step"]} (training-time evaluation)',
                 last['eval_top1_error'], last['eval_top5_error']))
  for path in sorted(glob.glob(os.path.join(workdir, 'eval_*.json'))):
    with open(path, encoding='utf-8') as f:
      saved = json.load(f)
    name = os.path.basename(path)[len('eval_'):-len('.json')]
    rows.append((f'this run, {name} (`{os.path.basename(path)}`)',
                 saved['eval_top1_error'], saved['eval_top5_error']))
  for name, top1, top5 in evaluation.paper_rows(config, ensemble=False):
    rows.append((name, top1, top5))
  for name, top1, top5 in evaluation.paper_rows(config, ensemble=True):
    rows.append((name, top1, top5))
  return rows


def build(workdir) -> str:
  """Draws the figures and writes `workdir/report.md`; returns its path."""
  config = run_files.load_config(workdir)
  curves_path = curves.render(workdir)
  drawn = filters.render(workdir)
  lines = ['# AlexNet run report', '',
           f'Workdir: `{os.path.abspath(workdir)}`. Dataset: '
           f'`{config.dataset}`, evaluated on `{config.eval_split}`.', '',
           '## Final errors', '',
           '| model | top-1 error | top-5 error |', '|---|---|---|']
  for name, top1, top5 in _error_rows(workdir, config):
    lines.append(f'| {name} | {top1:.2%} | {top5:.2%} |')
  if not evaluation.paper_rows(config, ensemble=False):
    lines += ['', 'The published numbers are for ILSVRC-2012 validation, so '
              'none apply to this dataset.']
  scores = ', '.join(f'column {i} {s:.3f}'
                     for i, s in enumerate(drawn['colourfulness']))
  lines += ['', '## Training curves', '',
            f'![loss, error and learning rate]({os.path.basename(curves_path)})',
            '', f'## conv1 kernels (step {drawn["step"]})', '',
            f'![conv1 kernels per column]({os.path.basename(drawn["path"])})',
            '', f'Colourfulness per column (0 is grey): {scores}.', '',
            '## Config', '', '```json',
            config.to_json_best_effort(indent=2, sort_keys=True), '```', '']
  path = os.path.join(workdir, REPORT_FILE)
  with open(path, 'w', encoding='utf-8') as f:
    f.write('\n'.join(lines))
  return path


def define_flags():
  """Defines the command-line flags; only the command itself calls this."""
  flags.DEFINE_string('workdir', None, 'Workdir of a trained run.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  print(f'Report written to {build(FLAGS.workdir)}')


if __name__ == '__main__':
  define_flags()
  flags.mark_flags_as_required(['workdir'])
  app.run(main)
