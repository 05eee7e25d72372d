"""Tests the training stream's reproducibility, shards, eval counts and prefetch."""

import itertools
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from alexnet_jax import datasets
from alexnet_jax import input_pipeline
from alexnet_jax import preprocessing
from alexnet_jax import sharding
from configs import digits as digits_config
from configs import imagefolder as folder_config
import folder_fixture
import ilsvrc_fixture


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
  return folder_fixture.write_image_folder(
      tmp_path_factory.mktemp('folder'), num_classes=2, train_per_class=4)


def folder_cfg(root, **overrides):
  config = folder_config.get_config()
  config.data_dir = root
  config.model.num_classes = 2
  config.model.input_size = 67
  config.input.resize_size = 76
  config.input.threads = 2
  for key, value in overrides.items():
    config.input[key] = value
  return config


def digits_cfg():
  config = digits_config.get_config()
  config.input.threads = 2
  return config


def take(config, batch, count, seed=None, start_step=0):
  if seed is not None:
    config.seed = seed
  config.batch_size = batch
  dataset, _ = input_pipeline.create_train_dataset(config, batch, 0, 1,
                                                   start_step=start_step)
  return list(itertools.islice(dataset.as_numpy_iterator(), count))


def assert_batches_equal(first, second):
  assert len(first) == len(second)
  for a, b in zip(first, second):
    np.testing.assert_array_equal(a['image'], b['image'])
    np.testing.assert_array_equal(a['offset'], b['offset'])
    np.testing.assert_array_equal(a['label'], b['label'])


def test_same_seed_same_batches_digits():
  assert_batches_equal(take(digits_cfg(), 8, 2), take(digits_cfg(), 8, 2))


def test_same_seed_same_batches_folder(folder):
  assert_batches_equal(take(folder_cfg(folder), 3, 2),
                       take(folder_cfg(folder), 3, 2))


def test_other_seed_differs(folder):
  first = take(folder_cfg(folder), 3, 1, seed=0)[0]['image']
  other = take(folder_cfg(folder), 3, 1, seed=1)[0]['image']
  assert not np.array_equal(first, other)


def test_other_seed_changes_lighting(folder):
  first = take(folder_cfg(folder), 3, 1, seed=0)[0]['offset']
  other = take(folder_cfg(folder), 3, 1, seed=1)[0]['offset']
  assert not np.array_equal(first, other)


def float_augmentation(encoded, seed, config, stats):
  """Returns the training view computed in float32 throughout, offset added."""
  inp, size = config.input, config.model.input_size
  crop_seed, flip_seed, light_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 3))
  flip = tf.random.stateless_uniform([], flip_seed) < 0.5
  image = preprocessing.decode_and_random_crop(
      encoded, crop_seed, inp.resize_size, size, flip)
  alpha = preprocessing.random_pca_alpha(light_seed, inp.pca_alpha_std)
  shift = preprocessing.pca_shift(alpha, stats.pca_eigval, stats.pca_eigvec)
  return (image + shift - np.asarray(stats.mean_rgb, np.float32)).numpy()


def test_uint8_plus_offset_matches_float(folder):
  """The uint8 image plus its offset is the float view to within 0.5."""
  config = folder_cfg(folder)
  stats = input_pipeline.input_stats(config.input)
  listed, _ = datasets.list_image_folder(folder, 'train')
  for i, path in enumerate(listed[:4]):
    encoded = tf.io.read_file(path)
    seed = tf.constant([i, 11])
    image, offset = input_pipeline.preprocess_train(encoded, seed, config,
                                                    stats, encoded=True)
    assert image.dtype == tf.uint8
    got = input_pipeline.model_input({'image': image.numpy()[None],
                                      'offset': offset.numpy()[None]})[0]
    want = float_augmentation(encoded, seed, config, stats)
    np.testing.assert_allclose(got, want, atol=0.5 + 1e-3)
    assert np.abs(got - want).max() > 0.1  # The rounding is real.


def test_offset_without_lighting_is_minus_mean(folder):
  config = folder_cfg(folder, pca_lighting=False)
  batch = take(config, 3, 1)[0]
  mean = np.asarray(config.input.mean_rgb, np.float32)
  np.testing.assert_array_equal(batch['offset'], np.tile(-mean, (3, 1)))


def test_model_input_applies_offset_to_every_crop():
  image = np.arange(2 * 10 * 2 * 2 * 3).reshape(2, 10, 2, 2, 3) % 256
  offset = np.array([[1.0, 2.0, 3.0], [-4.0, -5.0, -6.0]], np.float32)
  got = input_pipeline.model_input({'image': image.astype(np.uint8),
                                    'offset': offset})
  assert got.dtype == np.float32
  np.testing.assert_array_equal(
      got, image.astype(np.float32) + offset[:, None, None, None, :])
  jax_got = input_pipeline.model_input({'image': jnp.asarray(image, jnp.uint8),
                                        'offset': jnp.asarray(offset)})
  np.testing.assert_array_equal(np.asarray(jax_got), got)


def test_epochs_reshuffle():
  source = datasets.create_source(digits_cfg(), True, 0, 1)
  orders = [[int(ex['index']) for ex in input_pipeline._epoch_stream(
      source, 2048, 0, epoch).as_numpy_iterator()] for epoch in (0, 1)]
  assert sorted(orders[0]) == sorted(orders[1])
  assert orders[0] != orders[1]


@pytest.mark.parametrize('start', [1, 3])
def test_resume_continues_stream_folder(folder, start):
  # 8 files, batch 3: step 3 starts in the second epoch.
  fresh = take(folder_cfg(folder), 3, start + 2)[start:]
  resumed = take(folder_cfg(folder), 3, 2, start_step=start)
  assert_batches_equal(fresh, resumed)


def test_resume_continues_stream_digits():
  fresh = take(digits_cfg(), 64, 25)[23:]
  resumed = take(digits_cfg(), 64, 2, start_step=23)
  assert_batches_equal(fresh, resumed)


def test_batches_same_on_any_mesh():
  batches = take(digits_cfg(), 8, 2)
  results = []
  for data in (1, 4):
    config = digits_cfg()
    config.mesh.data, config.mesh.model = data, 1
    mesh = sharding.create_mesh(config.mesh, devices=jax.devices()[:data])
    copies = (dict(batch) for batch in batches)
    results.append([np.asarray(batch['image']) for batch, _ in
                    input_pipeline.prefetch_to_mesh(copies, mesh)])
  assert len(results[0]) == 2
  for one, four in zip(*results):
    np.testing.assert_array_equal(one, four)


def shard_indices(config, process_count):
  shards = []
  for p in range(process_count):
    source = datasets.create_source(config, True, p, process_count)
    shards.append([int(ex['index']) for ex in
                   source.dataset.as_numpy_iterator()])
  return shards, source.total_examples


def check_shards(shards, total):
  flat = [i for shard in shards for i in shard]
  assert len(flat) == len(set(flat)), 'shards overlap'
  assert sorted(flat) == list(range(total))


@pytest.mark.parametrize('processes', [2, 3])
def test_shards_disjoint_folder(folder, processes):
  check_shards(*shard_indices(folder_cfg(folder), processes))


@pytest.mark.parametrize('processes', [2, 3])
def test_shards_disjoint_folder_paths(folder, processes):
  config = folder_cfg(folder)
  paths = []
  for p in range(processes):
    source = datasets.create_source(config, True, p, processes)
    paths += [ex['image'] for ex in source.dataset.as_numpy_iterator()]
  listed, _ = datasets.list_image_folder(folder, 'train')
  assert sorted(paths) == sorted(p.encode() for p in listed)


@pytest.mark.parametrize('processes', [2, 3])
def test_shards_disjoint_digits(processes):
  check_shards(*shard_indices(digits_cfg(), processes))


@pytest.fixture(scope='module')
def imagenet_config(tmp_path_factory):
  root = tmp_path_factory.mktemp('ilsvrc')
  ilsvrc_fixture.build_manual_dir(root / 'manual', num_classes=3,
                                  train_per_class=4, num_val=6, seed=0)
  ilsvrc_fixture.prepare_imagenet2012(root / 'data', root / 'manual')
  config = folder_config.get_config()
  config.dataset = 'imagenet2012'
  config.data_dir = str(root / 'data')
  return config


@pytest.mark.parametrize('processes', [2, 3])
def test_shards_disjoint_imagenet(imagenet_config, processes):
  shards, total = shard_indices(imagenet_config, processes)
  assert total == 12
  check_shards(shards, total)


def test_folder_class_count_checked(folder):
  config = folder_cfg(folder)
  config.model.num_classes = 5
  with pytest.raises(ValueError, match='num_classes=2'):
    datasets.create_source(config, True, 0, 1)


def test_missing_folder_named(tmp_path):
  with pytest.raises(FileNotFoundError, match='no train/'):
    datasets.create_source(folder_cfg(str(tmp_path)), True, 0, 1)


def test_eval_crops_checked(folder):
  config = folder_cfg(folder)
  config.eval.crops = 5
  with pytest.raises(ValueError, match='eval.crops=5'):
    input_pipeline.create_train_dataset(config, 2, 0, 1)


def test_configure_tensorflow_hides_gpus():
  code = ('from alexnet_jax import input_pipeline as p; import tensorflow as tf;'
          'p.configure_tensorflow(3);'
          'print(tf.config.get_visible_devices("GPU"),'
          'tf.config.threading.get_inter_op_parallelism_threads(),'
          'tf.config.threading.get_intra_op_parallelism_threads())')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                       text=True, check=True, cwd=input_pipeline.__file__
                       .rsplit('/alexnet_jax/', 1)[0]).stdout
  assert out.split() == ['[]', '3', '3']
