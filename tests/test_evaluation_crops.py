"""Tests ten-crop averaging and exact example counts of evaluation."""

import jax
import numpy as np
import pytest

from alexnet_jax import loop
from alexnet_jax import sharding
from alexnet_jax import train
from configs import digits as digits_config


def tiny_config(crops):
  config = digits_config.get_config()
  config.model.width = 0.125
  config.num_eval_examples = 7
  config.eval_batch_size = 4
  config.eval.crops = crops
  config.mesh.data, config.mesh.model = 2, 1
  config.input.threads = 2
  return config


@pytest.fixture(scope='module')
def trainer(tmp_path_factory):
  config = tiny_config(1)
  mesh = sharding.create_mesh(config.mesh, devices=jax.devices()[:2])
  trainer = loop.Trainer(config, str(tmp_path_factory.mktemp('eval')), mesh)
  yield trainer
  trainer.close()


@pytest.mark.parametrize('crops', [1, 10])
def test_eval_scores_exactly_n(trainer, crops):
  # 7 examples in batches of 4: the second batch contains one padding example.
  trainer.config.eval.crops = crops
  results = trainer.evaluate(0)
  assert float(results['eval_examples']) == 7.0


def test_crop_average_matches_per_crop_softmax(trainer):
  rng = np.random.default_rng(0)
  images = rng.normal(0, 50, (2, 10, 67, 67, 3)).astype(np.float32)
  logits = jax.jit(lambda p, x: train.crop_averaged_logits(
      trainer.graphdef, p, x))
  with jax.set_mesh(trainer.mesh):
    averaged = np.asarray(logits(trainer.state.params, images))
    per_crop = [np.asarray(logits(trainer.state.params, images[:, c]))
                for c in range(10)]
  probs = [np.exp(l - l.max(-1, keepdims=True)) for l in per_crop]
  probs = [p / p.sum(-1, keepdims=True) for p in probs]
  np.testing.assert_allclose(np.exp(averaged), np.mean(probs, axis=0),
                             rtol=1e-4, atol=1e-6)
