"""Test-session setup: four forced host CPU devices, set before JAX starts.

Meshes of 1x1, 1x2, 2x1 and 2x2 are then built from subsets of them.
"""

import os
import sys

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=4')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
  sys.path.insert(0, REPO_ROOT)

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

DIGITS_STEPS = 200


@pytest.fixture(scope='session')
def digits_run(tmp_path_factory):
  """Trains the digits config for 200 steps on one device; returns (config, workdir).

  The run reaches about 97% evaluation accuracy. Figure, report and ensemble
  tests share it.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from alexnet_jax import loop  # pylint: disable=g-import-not-at-top
  from alexnet_jax import sharding  # pylint: disable=g-import-not-at-top
  from configs import digits  # pylint: disable=g-import-not-at-top

  config = digits.get_config()
  config.num_train_steps = DIGITS_STEPS
  config.checkpoint_every_steps = DIGITS_STEPS
  config.mesh.data = 1
  workdir = str(tmp_path_factory.mktemp('digits_run'))
  mesh = sharding.create_mesh(config.mesh, devices=jax.devices()[:1])
  loop.train_and_evaluate(config, workdir, mesh)
  return config, workdir
