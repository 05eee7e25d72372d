r"""Trains or evaluates the paper's AlexNet, or prints its parameter table.

    python main.py --config=configs/digits.py --workdir=/tmp/digits
    python main.py --config=configs/ilsvrc2012.py --workdir=/tmp/x --mode=summary \
        --host_device_count=2
    python main.py --config=configs/ilsvrc2012.py --workdir=/tmp/ens --mode=eval \
        --ensemble=/tmp/run1,/tmp/run2
"""

import logging as std_logging
import os

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Folder for checkpoints, metrics and summaries.')
flags.DEFINE_enum('mode', 'train', ['train', 'eval', 'summary'],
                  'train: train and evaluate; eval: evaluate the latest '
                  'checkpoint in --workdir; summary: print the parameter table.')
flags.DEFINE_list('ensemble', None,
                  'With --mode=eval: workdirs of trained runs whose softmax '
                  'outputs are averaged; the result goes to --workdir.')
flags.DEFINE_bool('distributed', False,
                  'Call jax.distributed.initialize(); with no other flags it '
                  'detects TPU pods and SLURM.')
flags.DEFINE_string('coordinator_address', None,
                    'host:port of process 0, for jax.distributed.')
flags.DEFINE_integer('num_processes', None, 'Number of processes in the job.')
flags.DEFINE_integer('process_id', None, 'Index of this process.')
flags.DEFINE_list('local_device_ids', None,
                  'Devices this process uses, for example 0,1.')
flags.DEFINE_integer('heartbeat_timeout', 100,
                     'Seconds without a heartbeat after which jax.distributed '
                     'declares a process dead and stops the others with an '
                     'error.')
flags.DEFINE_integer('initialization_timeout', 300,
                     'Seconds jax.distributed.initialize() waits for all '
                     'processes to connect.')
flags.DEFINE_integer('host_device_count', None,
                     'On CPU, force this many host devices and use gloo '
                     'collectives across processes.')
config_flags.DEFINE_config_file('config', None, 'Configuration file.',
                                lock_config=True)
flags.mark_flags_as_required(['config', 'workdir'])


class _QuietLibraryInfo(std_logging.Filter):
  """Drops INFO records from Orbax, which logs several lines per checkpoint."""

  def filter(self, record):
    return record.levelno >= std_logging.WARNING or '/orbax/' not in record.pathname


def setup_runtime():
  """Configures devices and the multi-process runtime before JAX initialises."""
  if FLAGS.host_device_count:
    os.environ['XLA_FLAGS'] = (
        os.environ.get('XLA_FLAGS', '') +
        f' --xla_force_host_platform_device_count={FLAGS.host_device_count}')
  import jax  # pylint: disable=g-import-not-at-top
  if FLAGS.host_device_count:
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  explicit = {
      'coordinator_address': FLAGS.coordinator_address,
      'num_processes': FLAGS.num_processes,
      'process_id': FLAGS.process_id,
      'local_device_ids': ([int(i) for i in FLAGS.local_device_ids]
                           if FLAGS.local_device_ids else None),
  }
  explicit = {k: v for k, v in explicit.items() if v is not None}
  if FLAGS.distributed or explicit:
    jax.distributed.initialize(
        **explicit, heartbeat_timeout_seconds=FLAGS.heartbeat_timeout,
        initialization_timeout=FLAGS.initialization_timeout)
  return jax


def run_eval(config, mesh):
  """Evaluates one run or an ensemble, writes eval_<name>.json and prints the comparison."""
  import jax  # pylint: disable=g-import-not-at-top
  from alexnet_jax import evaluation  # pylint: disable=g-import-not-at-top
  from alexnet_jax import loop  # pylint: disable=g-import-not-at-top
  evaluation.check_crops(config)
  if FLAGS.ensemble:
    results = evaluation.evaluate_ensemble(config, FLAGS.ensemble, mesh)
  else:
    results = loop.evaluate_checkpoint(config, FLAGS.workdir, mesh)
  name = evaluation.eval_name(config, len(FLAGS.ensemble or ()))
  path = evaluation.write_results(FLAGS.workdir, name, results)
  if jax.process_index() == 0:
    print(evaluation.format_comparison(config, results, name,
                                       ensemble=bool(FLAGS.ensemble)))
    print(f'Written to {path}')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.get_absl_handler().addFilter(_QuietLibraryInfo())
  jax = setup_runtime()
  from alexnet_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  from alexnet_jax import loop  # pylint: disable=g-import-not-at-top
  from alexnet_jax import sharding  # pylint: disable=g-import-not-at-top
  from alexnet_jax import summary  # pylint: disable=g-import-not-at-top

  # tf.data must never take accelerator memory, which JAX owns.
  input_pipeline.configure_tensorflow()
  config = FLAGS.config
  logging.info('Process %d of %d; local devices %s; %d devices in all.',
               jax.process_index(), jax.process_count(), jax.local_devices(),
               jax.device_count())
  try:
    mesh = sharding.create_mesh(config.mesh)
  except ValueError as error:
    # A mesh that does not fit the devices is a usage error, not a crash.
    raise SystemExit(f'Error: {error}') from error
  logging.info('Mesh %s over devices %s.', dict(mesh.shape),
               mesh.devices.tolist())
  if FLAGS.mode == 'summary':
    print(summary.format_table(config, mesh))
    return
  if FLAGS.mode == 'eval':
    run_eval(config, mesh)
    return
  if FLAGS.ensemble:
    raise app.UsageError('--ensemble needs --mode=eval.')
  results = loop.train_and_evaluate(config, FLAGS.workdir, mesh)
  if jax.process_index() == 0:
    print(loop.format_final_line(results, FLAGS.workdir))


if __name__ == '__main__':
  app.run(main)
