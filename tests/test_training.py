"""End-to-end training on the embedded digits: resume, errors and non-finite losses."""

import os

import jax
import numpy as np
import pytest

from alexnet_jax import checkpointing
from alexnet_jax import loop
from alexnet_jax import metrics as metrics_lib
from alexnet_jax import sharding
from configs import digits


def tiny_config(**overrides):
  """Returns the digits config shrunk to a few seconds per run."""
  config = digits.get_config()
  config.model.width = 0.125
  config.batch_size = 16
  config.eval_batch_size = 32
  config.num_eval_examples = 64
  config.log_every_steps = 1
  config.eval_every_steps = -1
  config.checkpoint_every_steps = 3
  config.mesh.data = 1
  config.mesh.model = 1
  config.update(overrides)
  return config


def run(config, workdir):
  mesh = sharding.create_mesh(config.mesh)
  return loop.train_and_evaluate(config, str(workdir), mesh)


def train_losses(workdir):
  return {r['step']: r['train_loss'] for r in metrics_lib.read_metrics(
      str(workdir)) if 'train_loss' in r}


@pytest.fixture(scope='module')
def straight_run(tmp_path_factory):
  """Six uninterrupted steps, the reference for the resumed run."""
  workdir = tmp_path_factory.mktemp('straight')
  run(tiny_config(num_train_steps=6), workdir)
  return workdir


def test_resume_continues_from_step(straight_run, tmp_path):
  run(tiny_config(num_train_steps=3), tmp_path)
  result = run(tiny_config(num_train_steps=6), tmp_path)
  losses = train_losses(tmp_path)
  assert result['step'] == 6
  assert sorted(losses) == [1, 2, 3, 4, 5, 6]
  reference = train_losses(straight_run)
  np.testing.assert_allclose([losses[s] for s in range(1, 7)],
                             [reference[s] for s in range(1, 7)], rtol=1e-5)


def test_resume_restores_learning_rate_and_momentum(straight_run, tmp_path):
  run(tiny_config(num_train_steps=3), tmp_path)
  config = tiny_config(num_train_steps=6)
  trainer = loop.Trainer(config, str(tmp_path), sharding.create_mesh(
      config.mesh))
  restored_step = trainer.step
  momentum = jax.tree.leaves(trainer.state.opt_state)
  trainer.close()
  assert restored_step == 3
  assert any(np.abs(np.asarray(m)).max() > 0 for m in momentum
             if np.ndim(m) > 1)


def test_eval_counts_every_example(tmp_path):
  result = run(tiny_config(num_train_steps=1, num_eval_examples=-1,
                           eval_batch_size=64), tmp_path)
  # 360 held-out digits at batch 64: the last batch is padded, not dropped.
  assert result['eval_examples'] == 360


def test_batch_not_divisible_raises(tmp_path):
  config = tiny_config(batch_size=6)
  config.mesh.data = 4
  with pytest.raises(ValueError, match='batch_size=6 .* 4 data-parallel'):
    run(config, tmp_path)
  assert not os.path.exists(tmp_path / 'checkpoints' / '0')


def test_nonfinite_loss_stops_and_keeps_checkpoint(tmp_path):
  config = tiny_config(num_train_steps=40, learning_rate=1e4,
                       checkpoint_every_steps=1)
  with pytest.raises(FloatingPointError, match=r'at step \d+'):
    run(config, tmp_path)
  manager = checkpointing.create_manager(str(tmp_path), 3)
  last_good = manager.latest_step()
  manager.close()
  losses = train_losses(tmp_path)
  assert last_good is not None
  assert all(np.isfinite(losses[s]) for s in range(1, last_good + 1))


def test_missing_imagenet_names_manual_dir(tmp_path):
  from configs import ilsvrc2012  # pylint: disable=g-import-not-at-top
  config = ilsvrc2012.get_config()
  config.data_dir = str(tmp_path / 'tfds')
  config.mesh.model = 1
  with pytest.raises(FileNotFoundError) as error:
    run(config, tmp_path / 'work')
  message = str(error.value)
  assert str(tmp_path / 'tfds' / 'downloads' / 'manual') in message
  assert 'ILSVRC2012_img_train.tar' in message
  assert 'ILSVRC2012_img_val.tar' in message
