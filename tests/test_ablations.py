"""Tests of the ablation configs: each trains 2 steps, and the parameter counts."""

import importlib

import jax
import pytest

from alexnet_jax import loop
from alexnet_jax import sharding
from alexnet_jax import summary
from configs import ilsvrc2012

ABLATIONS = ('no_lrn', 'no_overlap_pool', 'one_column', 'no_pca_lighting',
             'no_dropout')


def ablation_config(name):
  return importlib.import_module(f'configs.ablations.{name}').get_config()


def shrink(config):
  """Runs the ablation on digits at width 0.125 for 2 steps."""
  config.dataset = 'digits'
  config.model.num_classes = 10
  config.model.input_size = 67
  config.input.resize_size = 76
  config.input.shuffle_buffer = 64
  config.model.width = 0.125
  config.batch_size = 8
  config.eval_batch_size = 16
  config.num_eval_examples = 32
  config.num_train_steps = 2
  return config


@pytest.mark.parametrize('name', ABLATIONS)
def test_ablation_trains(name, tmp_path):
  config = shrink(ablation_config(name))
  devices = jax.devices()[:2]
  mesh = sharding.create_mesh(config.mesh, devices=devices)
  results = loop.train_and_evaluate(config, str(tmp_path), mesh)
  assert results['step'] == 2


def test_one_column_count():
  assert summary.total_parameters(ablation_config('one_column')) == 16_630_440


def test_base_count():
  assert summary.total_parameters(ilsvrc2012.get_config()) == 60_965_224


def test_one_column_summary_table():
  config = ablation_config('one_column')
  mesh = sharding.create_mesh(config.mesh, devices=jax.devices()[:1])
  assert 'Total parameters: 16,630,440' in summary.format_table(config, mesh)


def test_one_column_rejects_split_mesh():
  config = ablation_config('one_column')
  config.mesh.model = 2
  mesh = sharding.create_mesh(config.mesh, devices=jax.devices()[:2])
  with pytest.raises(ValueError, match='mesh.model=1'):
    summary.format_table(config, mesh)
