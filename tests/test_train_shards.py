"""The training stream's shards: per-process batches that form the same global batch."""

import numpy as np
import pytest

from alexnet_jax import input_pipeline
from alexnet_jax import sharding
from configs import digits

STEPS = 3


def _config(train_shards):
  config = digits.get_config()
  config.batch_size = 16
  config.input.train_shards = train_shards
  return config


def _batches(config, rows, process_index, process_count, start_step=0):
  dataset, _ = input_pipeline.create_train_dataset(
      config, rows[1] - rows[0], process_index, process_count,
      start_step=start_step, rows=rows)
  return list(dataset.take(STEPS).as_numpy_iterator())


def test_processes_split_global_batch():
  config = _config(train_shards=2)
  whole = _batches(config, (0, 16), 0, 1)
  first = _batches(config, (0, 8), 0, 2)
  second = _batches(config, (8, 16), 1, 2)
  for step in range(STEPS):
    assert not set(first[step]['index']) & set(second[step]['index'])
    for key in ('image', 'offset', 'label', 'index'):
      np.testing.assert_array_equal(
          np.concatenate([first[step][key], second[step][key]]),
          whole[step][key])


def test_shards_are_disjoint_splits():
  config = _config(train_shards=2)
  sources = [input_pipeline.create_source(config, True, shard, 2)
             for shard in range(2)]
  indices = [set(np.concatenate([ex['index'] for ex in
                                 s.dataset.batch(4096).as_numpy_iterator()]))
             for s in sources]
  assert not indices[0] & indices[1]
  assert len(indices[0] | indices[1]) == sources[0].total_examples


def test_resume_continues_stream():
  config = _config(train_shards=2)
  whole = _batches(config, (0, 16), 0, 1)
  resumed = _batches(config, (0, 16), 0, 1, start_step=1)
  np.testing.assert_array_equal(resumed[0]['index'], whole[1]['index'])


def test_default_is_one_shard_per_process():
  assert input_pipeline.train_shard_range(_config(0), (8, 16), 2) == (1, 2, 2)


@pytest.mark.parametrize('shards, rows, message', [
    (3, (0, 16), 'does not divide batch_size=16'),
    (2, (4, 12), 'do not fall on the boundaries'),
])
def test_rejects_misaligned_shards(shards, rows, message):
  with pytest.raises(ValueError, match=message):
    input_pipeline.train_shard_range(_config(shards), rows, 2)


def test_single_process_holds_all_rows():
  config = digits.get_config()
  config.mesh.data, config.mesh.model = 2, 2
  mesh = sharding.create_mesh(config.mesh)
  assert sharding.process_batch_rows(mesh, 16) == (0, 16)
