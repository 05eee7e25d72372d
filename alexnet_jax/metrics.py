"""Classification metrics and the metric writers (JSON lines and TensorBoard)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging


def topk_correct(logits, labels, k):
  """Returns 1.0 where the label is among the k highest logits, else 0.0.

  Ties are broken by class index, as `jax.lax.top_k` breaks them. A tie with
  the true label therefore never counts as a hit for all tied classes, and a
  model with constant logits gets top-k error 1 - k / classes on a balanced
  set, not 0.

  The label's rank is counted with elementwise compares and a sum over
  classes, not with `lax.top_k`: XLA's partitioner gathers a batch-sharded
  `top_k` input across the `data` axis, and this form stays local to each
  device's batch shard.
  """
  classes = jnp.arange(logits.shape[-1])
  is_label = classes == labels[:, None]
  label_logit = jnp.sum(jnp.where(is_label, logits, 0), axis=-1, keepdims=True)
  ahead = (logits > label_logit) | ((logits == label_logit) &
                                    (classes < labels[:, None]))
  return (jnp.sum(ahead, axis=-1) < k).astype(jnp.float32)


def cross_entropy(logits, labels):
  """Returns the per-example softmax cross-entropy."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


class MetricWriter:
  """Writes scalars to `workdir/metrics.jsonl` and TensorBoard, from process 0 only."""

  def __init__(self, workdir: str):
    self.enabled = jax.process_index() == 0
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self._summary = None
    if self.enabled:
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      os.makedirs(workdir, exist_ok=True)
      self._summary = tf.summary.create_file_writer(workdir)

  def write(self, step: int, scalars: dict) -> None:
    """Appends one JSON object for `step` and the same scalars to TensorBoard."""
    if not self.enabled:
      return
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    values = {k: float(v) for k, v in scalars.items()}
    with open(self.path, 'a', encoding='utf-8') as f:
      f.write(json.dumps({'step': int(step), **values}) + '\n')
    with self._summary.as_default(step=int(step)):
      for name, value in values.items():
        tf.summary.scalar(name, value)
    self._summary.flush()
    logging.info('step %d: %s', step,
                 ', '.join(f'{k}={v:.5g}' for k, v in values.items()))

  def close(self):
    if self._summary is not None:
      self._summary.close()


def read_metrics(workdir: str) -> list[dict]:
  """Reads every record of `workdir/metrics.jsonl`."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  with open(path, encoding='utf-8') as f:
    return [json.loads(line) for line in f if line.strip()]


def first_nonfinite(values) -> int | None:
  """Returns the position of the first NaN or infinite value, or None."""
  bad = np.flatnonzero(~np.isfinite(np.asarray(values, np.float64)))
  return int(bad[0]) if bad.size else None
