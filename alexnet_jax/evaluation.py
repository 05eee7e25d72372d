"""The test protocol: top-1 and top-5 error of one run or an ensemble, beside the paper's.

An ensemble averages the softmax outputs of several trained runs, as
Krizhevsky et al. (2012) do for their 5-CNN result, and scores the average.
"""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from alexnet_jax import checkpointing
from alexnet_jax import input_pipeline
from alexnet_jax import metrics as metrics_lib
from alexnet_jax import models
from alexnet_jax import sharding
from alexnet_jax import train

# Published ILSVRC-2012 validation errors (top-1, top-5), by protocol.
PAPER_RESULTS = {
    'single': [
        ('Krizhevsky et al. (2012), 1 CNN', 0.407, 0.182),
        ("Caffe bvlc_alexnet, centre crop (Caffe's model zoo)", 0.429, 0.198),
    ],
    'ensemble': [
        ('Krizhevsky et al. (2012), 5 CNNs averaged', 0.381, 0.164),
    ],
}
EVAL_CROPS = (1, 10)


def eval_name(config, ensemble_size: int = 0) -> str:
  """Returns the protocol name, such as 'validation_1crop' or 'validation_10crop_ensemble5'."""
  name = f'{config.eval_split}_{config.eval.crops}crop'
  return f'{name}_ensemble{ensemble_size}' if ensemble_size else name


def check_crops(config) -> None:
  if config.eval.crops not in EVAL_CROPS:
    raise ValueError(f'eval.crops={config.eval.crops} is invalid: use 1 '
                     '(centre) or 10 (corners, centre and their flips).')


def restore_params(config, workdir, mesh):
  """Restores the latest parameters of the run in `workdir` onto `mesh`.

  Returns:
    (params, graphdef, step).
  """
  optimizer = train.create_optimizer(config)
  manager = checkpointing.create_manager(workdir, config.keep_checkpoints,
                                         async_save=False)
  try:
    with jax.set_mesh(mesh):
      state, shardings, graphdef = train.create_train_state(
          config, mesh, optimizer)
      abstract = checkpointing.abstract_with_shardings(
          jax.eval_shape(lambda s: s, state), shardings)
      restored = checkpointing.restore_latest(manager, abstract)
  finally:
    manager.close()
  if restored is None:
    raise FileNotFoundError(
        f'No checkpoint in {os.path.join(workdir, "checkpoints")}. Train '
        'first with --mode=train and that --workdir.')
  return restored.params, graphdef, int(jax.device_get(restored.step))


def predict_step(params, batch, *, graphdef):
  """Returns softmax probabilities [batch, classes] for a batch of images.

  Images of shape [batch, crops, height, width, 3] are scored per crop and
  their probabilities averaged.
  """
  logits = train.crop_averaged_logits(graphdef, params,
                                      input_pipeline.model_input(batch))
  return jax.nn.softmax(logits, axis=-1)


def predict(config, workdir, mesh):
  """Returns the softmax outputs, labels and mask over the whole evaluation split."""
  params, graphdef, step = restore_params(config, workdir, mesh)
  logging.info('Scoring %s at step %d on %s.', workdir, step,
               eval_name(config))
  replicated = sharding.replicated(mesh)
  with jax.set_mesh(mesh):
    param_shardings = jax.tree.map(lambda x: x.sharding, params)
    step_fn = jax.jit(functools.partial(predict_step, graphdef=graphdef),
                      in_shardings=(param_shardings,
                                    sharding.batch_sharding(mesh)),
                      out_shardings=replicated,
                      compiler_options=sharding.compiler_options(mesh))
    labels_fn = jax.jit(lambda b: (b['label'], b['mask']),
                        out_shardings=replicated)
    local_batch = config.eval_batch_size // jax.process_count()
    dataset, _ = input_pipeline.create_eval_dataset(
        config, local_batch, jax.process_index(), jax.process_count())
    probs, labels, masks = [], [], []
    for batch in dataset.as_numpy_iterator():
      global_batch = sharding.shard_batch(batch, mesh)
      probs.append(np.asarray(step_fn(params, global_batch)))
      gathered = labels_fn(global_batch)
      labels.append(np.asarray(gathered[0]))
      masks.append(np.asarray(gathered[1]))
  return np.concatenate(probs), np.concatenate(labels), np.concatenate(masks)


def score(probs, labels, mask) -> dict:
  """Returns top-1 and top-5 error of averaged probabilities over the masked examples."""
  probs, labels = jnp.asarray(probs), jnp.asarray(labels)
  count = float(np.sum(mask))
  top1 = float(np.sum(metrics_lib.topk_correct(probs, labels, 1) * mask))
  top5 = float(np.sum(metrics_lib.topk_correct(probs, labels, 5) * mask))
  return {'eval_top1_error': 1 - top1 / count,
          'eval_top5_error': 1 - top5 / count, 'eval_examples': count}


def ensemble_probabilities(config, workdirs, mesh):
  """Returns the mean softmax output of the runs in `workdirs`, with labels and mask."""
  total, labels, mask = None, None, None
  for workdir in workdirs:
    probs, run_labels, run_mask = predict(config, workdir, mesh)
    if labels is not None and not np.array_equal(run_labels, labels):
      raise ValueError(f'{workdir} scored a different evaluation set; use one '
                       '--config for every run of the ensemble.')
    total = probs if total is None else total + probs
    labels, mask = run_labels, run_mask
  return total / len(workdirs), labels, mask


def evaluate_ensemble(config, workdirs, mesh) -> dict:
  """Scores the averaged softmax outputs of the runs in `workdirs`."""
  check_crops(config)
  probs, labels, mask = ensemble_probabilities(config, workdirs, mesh)
  return {**score(probs, labels, mask), 'ensemble_size': len(workdirs)}


def write_results(workdir, name, results) -> str:
  """Writes `results` to `workdir/eval_<name>.json` and returns the path."""
  path = os.path.join(workdir, f'eval_{name}.json')
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
      json.dump({k: (float(v) if isinstance(v, (int, float, np.number)) else v)
                 for k, v in results.items()}, f, indent=2, sort_keys=True)
  return path


def paper_rows(config, ensemble: bool):
  """Returns the published (name, top-1, top-5) errors for this protocol, if any."""
  if config.dataset != 'imagenet2012' or config.eval_split != 'validation':
    return []
  return PAPER_RESULTS['ensemble' if ensemble else 'single']


def format_comparison(config, results, name, ensemble=False) -> str:
  """Renders this run's errors and, on ILSVRC-2012 validation, the published ones."""
  lines = [f'{"model":<55} {"top-1 error":>11} {"top-5 error":>11}',
           f'{"this run (" + name + ")":<55} '
           f'{results["eval_top1_error"]:>11.2%} '
           f'{results["eval_top5_error"]:>11.2%}']
  for row_name, top1, top5 in paper_rows(config, ensemble):
    lines.append(f'{row_name:<55} {top1:>11.1%} {top5:>11.1%}')
  return '\n'.join(lines)
