"""Tests of the test protocol: top-k with ties, and ensembles of trained runs."""

import jax
import jax.numpy as jnp
import numpy as np

from alexnet_jax import checkpointing
from alexnet_jax import evaluation
from alexnet_jax import input_pipeline
from alexnet_jax import metrics as metrics_lib
from alexnet_jax import sharding
from alexnet_jax import train


def test_constant_logits_top5_error():
  classes = 10
  labels = jnp.tile(jnp.arange(classes), 3)
  logits = jnp.zeros((labels.shape[0], classes))
  error = 1 - float(jnp.mean(metrics_lib.topk_correct(logits, labels, 5)))
  assert abs(error - (1 - 5 / classes)) < 1e-6


def test_constant_logits_top1_error():
  classes = 10
  labels = jnp.tile(jnp.arange(classes), 3)
  logits = jnp.zeros((labels.shape[0], classes))
  error = 1 - float(jnp.mean(metrics_lib.topk_correct(logits, labels, 1)))
  assert abs(error - (1 - 1 / classes)) < 1e-6


def save_initial_run(config, workdir, mesh, seed):
  """Saves a freshly initialised state with another seed as a second run."""
  config = config.copy_and_resolve_references()
  config.seed = seed
  with jax.set_mesh(mesh):
    state, _, _ = train.create_train_state(config, mesh,
                                           train.create_optimizer(config))
  manager = checkpointing.create_manager(workdir, 1, async_save=False)
  checkpointing.save(manager, 0, state)
  manager.wait_until_finished()
  manager.close()


def hand_softmax_mean(config, workdirs, mesh, images):
  """Averages softmax(logits) of each run on `images`, computed directly."""
  outputs = []
  for workdir in workdirs:
    params, graphdef, _ = evaluation.restore_params(config, workdir, mesh)
    with jax.set_mesh(mesh):
      logits = train._forward(graphdef, params, images)  # pylint: disable=protected-access
    outputs.append(np.asarray(jax.nn.softmax(logits, axis=-1)))
  return np.mean(outputs, axis=0)


def test_ensemble_is_softmax_mean(digits_run, tmp_path):
  config, trained = digits_run
  mesh = sharding.create_mesh(config.mesh, devices=jax.devices()[:1])
  second = str(tmp_path / 'second')
  save_initial_run(config, second, mesh, seed=1)
  probs, labels, mask = evaluation.ensemble_probabilities(
      config, [trained, second], mesh)
  dataset, _ = input_pipeline.create_eval_dataset(config, 4, 0, 1)
  first = next(dataset.as_numpy_iterator())
  expected = hand_softmax_mean(config, [trained, second], mesh,
                               input_pipeline.model_input(first))
  np.testing.assert_allclose(probs[:4], expected, rtol=1e-5, atol=1e-7)
  assert np.array_equal(labels[:4], first['label'])
  assert mask.sum() == 360
