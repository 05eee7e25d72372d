"""Tests the image ops against hand-worked references, eagerly and in Dataset.map."""

import numpy as np
import pytest
import tensorflow as tf

from alexnet_jax import preprocessing
from configs import ilsvrc2012
import folder_fixture

MODES = ('eager', 'map')
EIGVAL = ilsvrc2012.IMAGENET_PCA_EIGVAL
EIGVEC = ilsvrc2012.IMAGENET_PCA_EIGVEC


def run(fn, mode, *args):
  """Runs fn(*args) eagerly, or inside tf.data.Dataset.map."""
  if mode == 'eager':
    return tf.nest.map_structure(np.asarray, fn(*args))
  dataset = tf.data.Dataset.from_tensors(args).map(fn)
  return next(dataset.as_numpy_iterator())


def coordinate_image(size):
  """Returns a float image whose channels hold (row, column, row * size + column)."""
  rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing='ij')
  return np.stack([rows, cols, rows * size + cols], -1).astype(np.float32)


@pytest.mark.parametrize('mode', MODES)
def test_pca_lighting_first_component(mode):
  image = np.full((4, 5, 3), 100.0, np.float32)
  s = 0.7
  alpha = np.array([s, 0.0, 0.0], np.float32)
  out = run(lambda im, a: preprocessing.pca_lighting(im, a, EIGVAL, EIGVEC),
            mode, image, alpha)
  column = np.array([row[0] for row in EIGVEC])
  expected = 100.0 + s * EIGVAL[0] * column * 255.0
  np.testing.assert_allclose(out, np.broadcast_to(expected, out.shape),
                             rtol=1e-6)
  row = np.array(EIGVEC[0])
  assert not np.allclose(out[0, 0], 100.0 + s * EIGVAL[0] * row * 255.0)


def test_pca_lighting_imagenet_shift_near_grey():
  image = np.zeros((2, 2, 3), np.float32)
  out = np.asarray(preprocessing.pca_lighting(
      image, np.array([1.0, 0.0, 0.0], np.float32), EIGVAL, EIGVEC))
  shift = out[0, 0]
  assert np.ptp(shift) < 0.05 * np.abs(shift).mean()


@pytest.mark.parametrize('mode', MODES)
def test_random_pca_lighting_seeded(mode):
  image = np.full((3, 3, 3), 50.0, np.float32)
  fn = lambda im, seed: preprocessing.random_pca_lighting(
      im, seed, 0.1, EIGVAL, EIGVEC)
  first = run(fn, mode, image, np.array([1, 2], np.int32))
  again = run(fn, mode, image, np.array([1, 2], np.int32))
  other = run(fn, mode, image, np.array([1, 3], np.int32))
  np.testing.assert_array_equal(first, again)
  assert not np.array_equal(first, other)


@pytest.mark.parametrize('mode', MODES)
def test_random_crop_is_a_window(mode):
  image = coordinate_image(20)
  out = run(lambda im, seed: preprocessing.random_crop(im, 7, seed), mode,
            image, np.array([3, 4], np.int32))
  top, left = int(out[0, 0, 0]), int(out[0, 0, 1])
  np.testing.assert_array_equal(out, image[top:top + 7, left:left + 7])


@pytest.mark.parametrize('mode', MODES)
def test_random_flip_flips_or_keeps(mode):
  image = coordinate_image(6)
  outs = [run(lambda im, seed: preprocessing.random_flip(im, seed), mode,
              image, np.array([0, i], np.int32)) for i in range(16)]
  flipped = [np.array_equal(out, image[:, ::-1]) for out in outs]
  kept = [np.array_equal(out, image) for out in outs]
  assert all(f or k for f, k in zip(flipped, kept))
  assert any(flipped)
  assert any(kept)


@pytest.mark.parametrize('mode', MODES)
def test_ten_crop_exact_views(mode):
  image = coordinate_image(256)
  views = run(lambda im: preprocessing.ten_crop(im, 227), mode, image)
  starts = [(14, 14), (0, 0), (0, 29), (29, 0), (29, 29)]
  for i, (top, left) in enumerate(starts):
    window = image[top:top + 227, left:left + 227]
    np.testing.assert_array_equal(views[i], window, err_msg=f'view {i}')
    np.testing.assert_array_equal(views[i + 5], window[:, ::-1],
                                  err_msg=f'flipped view {i + 5}')


def test_source_window_hand_worked():
  # 375x500 source: scale 256/375, rescaled 256x341, centre square at column
  # 42, window 227 * 375 / 256 = 332.5 -> 333 source pixels.
  window = preprocessing.source_window(375, 500, [0, 0], 256, 227)
  np.testing.assert_array_equal(window, [0, 61, 333, 333])
  window = preprocessing.source_window(375, 500, [29, 29], 256, 227)
  np.testing.assert_array_equal(window, [42, 104, 333, 333])


def test_source_window_small_image():
  # 80x100 source: scale 3.2, rescaled 256x320, centre square at column 32,
  # top 29 / 3.2 -> 9, left 32 / 3.2 = 10, window 227 / 3.2 = 70.9 -> 71.
  window = preprocessing.source_window(80, 100, [29, 0], 256, 227)
  np.testing.assert_array_equal(window, [9, 10, 71, 71])


@pytest.mark.parametrize('mode', MODES)
def test_decode_and_crop_matches_full_decode(mode):
  rng = np.random.default_rng(0)
  data = folder_fixture.encode(folder_fixture.photo(0, (500, 375), rng))
  seed = np.array([5, 6], np.int32)
  out = run(lambda b, s: tf.cast(preprocessing.decode_and_random_crop(
      b, s, 256, 227), tf.float32), mode, data, seed)
  offset = preprocessing.random_window_offset(256, 227, seed)
  top, left, h, w = np.asarray(preprocessing.source_window(375, 500, offset,
                                                           256, 227))
  full = tf.io.decode_jpeg(data, channels=3)[top:top + h, left:left + w]
  reference = preprocessing.resize_square(full, 227).numpy()
  assert out.shape == (227, 227, 3)
  assert np.abs(out - reference).max() <= 3.0
  assert np.abs(out - reference).mean() < 0.5


def bilinear_half_pixel(image, size):
  """NumPy bilinear resize with half-pixel centres, edges clamped."""
  scale = image.shape[0] / size
  grid = (np.arange(size) + 0.5) * scale - 0.5
  floor = np.floor(grid)
  low = np.maximum(floor, 0).astype(int)
  high = np.minimum(np.ceil(grid), image.shape[0] - 1).astype(int)
  frac = grid - floor
  rows = (image[low] * (1 - frac)[:, None, None] +
          image[high] * frac[:, None, None])
  return (rows[:, low] * (1 - frac)[None, :, None] +
          rows[:, high] * frac[None, :, None])


@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('flip', [False, True])
def test_resize_square_bilinear(mode, flip):
  image = np.random.default_rng(0).integers(0, 256, (40, 40, 3), np.uint8)
  out = run(lambda im, f: preprocessing.resize_square(im, 27, f), mode,
            image, np.array(flip))
  expected = bilinear_half_pixel(image.astype(np.float64), 27)
  if flip:
    expected = expected[:, ::-1]
  np.testing.assert_allclose(out, expected, atol=1e-3)


def test_resize_square_antialiased_beyond_2x():
  image = np.zeros((60, 60, 3), np.uint8)
  image[:, ::2] = 255  # Stripes one pixel wide: bilinear sampling aliases.
  out = preprocessing.resize_square(image, 20).numpy()
  np.testing.assert_allclose(out, 127.5, atol=20.0)


@pytest.fixture(scope='module')
def unusual_files(tmp_path_factory):
  return folder_fixture.write_bad_files(tmp_path_factory.mktemp('bad'))


@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('name', folder_fixture.UNUSUAL)
def test_unusual_files_decode_to_rgb(unusual_files, name, mode):
  data = tf.io.read_file(unusual_files[name])
  out = run(lambda b: preprocessing.decode_and_random_crop(
      b, tf.constant([1, 2]), 256, 227), mode, data)
  assert out.shape == (227, 227, 3)
  assert np.isfinite(out).all()
  assert out.min() >= 0.0
  assert out.max() <= 255.0


@pytest.mark.parametrize('name', folder_fixture.BROKEN)
def test_broken_files_fail_to_decode(unusual_files, name):
  data = tf.io.read_file(unusual_files[name])
  with pytest.raises(tf.errors.InvalidArgumentError):
    preprocessing.decode_and_random_crop(data, tf.constant([1, 2]), 256, 227)
