r"""Computes a data set's mean and RGB PCA for the paper's input pipeline.

Reads a sample of training images as the model sees them before
augmentation (shorter side rescaled to input.resize_size, centre square,
pixels in [0, 255]) and writes a JSON file that input.stats_file accepts:

* mean_rgb: per-channel mean on the [0, 255] scale, subtracted from inputs;
* pca_eigval, pca_eigvec: eigenvalues (descending) and eigenvectors (one per
  column, rows R, G, B) of the 3x3 covariance of pixels divided by 255, the
  [0, 1] scale of fb.resnet.torch's ImageNet constants that PCA lighting
  expects.

    python -m alexnet_jax.tools.dataset_stats --config=configs/imagefolder.py \
        --config.data_dir=/data/flowers --output=/data/flowers/stats.json
"""

import json

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf
import tqdm
from ml_collections import config_flags

from alexnet_jax import datasets
from alexnet_jax import input_pipeline
from alexnet_jax import preprocessing

FLAGS = flags.FLAGS
flags.DEFINE_string('output', None, 'Path of the JSON file to write.')
flags.DEFINE_integer('num_images', 10_000,
                     'Training images to sample; -1 reads the whole split.')
flags.DEFINE_integer('seed', 0, 'Seed of the sample.')
config_flags.DEFINE_config_file('config', None, 'Configuration file.')
flags.mark_flags_as_required(['config', 'output'])


def sample_dataset(config, num_images, seed):
  """Returns (dataset of uint8 resize_size squares, number of images)."""
  source = datasets.create_source(config, True, 0, 1, check_labels=False)
  count = source.num_examples if num_images < 0 else min(
      num_images, source.num_examples)
  size = config.input.resize_size

  def process(example):
    image = example['image']
    if source.from_files:
      image = tf.io.read_file(image)
    if source.encoded:
      image = preprocessing.decode_rgb(image)
    image = preprocessing.resize_shorter_side(image, size)
    image = preprocessing.center_crop(image, size)
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)

  dataset = source.dataset.shuffle(source.num_examples, seed=seed).take(count)
  dataset = dataset.map(process, num_parallel_calls=tf.data.AUTOTUNE)
  dataset = dataset.with_options(input_pipeline.dataset_options(config))
  return dataset.prefetch(tf.data.AUTOTUNE), count


def pixel_stats(images, total=None):
  """Returns the mean ([0, 255]) and the PCA ([0, 1] scale) of RGB pixels.

  Args:
    images: iterable of uint8 [height, width, 3] arrays.
    total: number of images, for the progress bar.

  Returns:
    A dict with mean_rgb, pca_eigval (descending) and pca_eigvec (columns).
  """
  count, sums, products = 0, np.zeros(3), np.zeros((3, 3))
  for image in tqdm.tqdm(images, total=total, unit='image'):
    pixels = image.reshape(-1, 3).astype(np.float64) / 255.0
    count += len(pixels)
    sums += pixels.sum(axis=0)
    products += pixels.T @ pixels
  mean = sums / count
  covariance = products / count - np.outer(mean, mean)
  eigval, eigvec = np.linalg.eigh(covariance)
  order = np.argsort(eigval)[::-1]
  return {
      'mean_rgb': (mean * 255.0).tolist(),
      'pca_eigval': eigval[order].tolist(),
      'pca_eigvec': eigvec[:, order].tolist(),
  }


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  input_pipeline.configure_tensorflow()
  dataset, count = sample_dataset(FLAGS.config, FLAGS.num_images, FLAGS.seed)
  logging.info('Reading %d training images.', count)
  stats = pixel_stats(dataset.as_numpy_iterator(), total=count)
  stats.update(
      num_images=count,
      mean_rgb_scale='pixels in [0, 255]',
      pca_scale='pixels in [0, 1]; eigenvectors are the columns',
  )
  with tf.io.gfile.GFile(FLAGS.output, 'w') as f:
    json.dump(stats, f, indent=2)
  print(f'Wrote the statistics of {count} images to {FLAGS.output}')


if __name__ == '__main__':
  app.run(main)
