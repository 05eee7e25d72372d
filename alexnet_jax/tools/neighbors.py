r"""Shows the training images nearest to validation images by fc7 activations (the paper's Fig. 4).

For each query from the evaluation split, the 6 training images whose fc7
activations are closest in Euclidean distance, as in Krizhevsky et al. (2012).
Images go through the evaluation preprocessing (centre crop, no
augmentation). The tool prints the fraction of neighbours that share their
query's class.

    python -m alexnet_jax.tools.neighbors --workdir=/tmp/digits --queries=8
"""

import functools
import os

import jax
import numpy as np
import tensorflow as tf
from absl import app
from absl import flags
from flax import nnx
from matplotlib import pyplot as plt
from sklearn import neighbors as sk_neighbors

from alexnet_jax import input_pipeline
from alexnet_jax import preprocessing
from alexnet_jax import sharding
from alexnet_jax.tools import run_files

FLAGS = flags.FLAGS

NUM_NEIGHBORS = 6
BATCH = 64


def _images(config, train, limit):
  """Yields batches of (preprocessed image, label) from one split, unaugmented."""
  source = input_pipeline.create_source(config, train, 0, 1)
  dataset = source.dataset.take(limit) if limit > 0 else source.dataset

  def process(example):
    image = example['image']
    if source.from_files:
      image = tf.io.read_file(image)
    if source.encoded:
      image = preprocessing.decode_rgb(image)
    views, offset = input_pipeline.preprocess_eval(image, config)
    return {'image': views, 'offset': offset}, example['label']

  return dataset.map(process, num_parallel_calls=tf.data.AUTOTUNE).batch(
      BATCH).prefetch(tf.data.AUTOTUNE).as_numpy_iterator()


def _fc7(graphdef, params, images):
  model = nnx.merge(graphdef, params)
  return model(images, capture_fc7=True)[1]


def features(config, mesh, params, graphdef, train, limit):
  """Returns (fc7 [n, d], labels [n], images [n, h, w, 3]) of one split."""
  fc7_fn = jax.jit(functools.partial(_fc7, graphdef),
                   compiler_options=sharding.compiler_options(mesh))
  feats, labels, images = [], [], []
  with jax.set_mesh(mesh):
    for batch, label in _images(config, train, limit):
      count = label.shape[0]
      padded = np.pad(input_pipeline.model_input(batch),
                      [(0, BATCH - count)] + [(0, 0)] * 3)
      padded = sharding.shard_batch({'image': padded}, mesh)['image']
      feats.append(np.asarray(fc7_fn(params, padded))[:count])
      labels.append(label)
      images.append(batch['image'])
  return np.concatenate(feats), np.concatenate(labels), np.concatenate(images)


def nearest(train_feats, query_feats):
  """Returns the indices [queries, 6] of the nearest training features."""
  index = sk_neighbors.NearestNeighbors(n_neighbors=NUM_NEIGHBORS,
                                        metric='euclidean')
  index.fit(train_feats)
  return index.kneighbors(query_feats, return_distance=False)




def draw(query_images, train_images, neighbor_ids, path):
  rows = len(query_images)
  fig, axes = plt.subplots(rows, NUM_NEIGHBORS + 1,
                           figsize=(1.6 * (NUM_NEIGHBORS + 1), 1.6 * rows),
                           squeeze=False)
  for row in range(rows):
    shown = [query_images[row]] + [train_images[i] for i in neighbor_ids[row]]
    for col, image in enumerate(shown):
      axes[row, col].imshow(image)
      axes[row, col].axis('off')
  axes[0, 0].set_title('query')
  fig.savefig(path, dpi=80)
  plt.close(fig)


def render(workdir, queries, train_images=20_000, output=None) -> dict:
  """Finds and draws the neighbours; returns the path and per-query class agreement."""
  config, mesh, params, graphdef, _ = run_files.load_run(workdir)
  train_feats, train_labels, train_pixels = features(
      config, mesh, params, graphdef, True, train_images)
  eval_feats, eval_labels, eval_pixels = features(
      config, mesh, params, graphdef, False, -1)
  chosen = np.linspace(0, len(eval_labels) - 1, queries).round().astype(int)
  ids = nearest(train_feats, eval_feats[chosen])
  agreement = (train_labels[ids] == eval_labels[chosen][:, None]).mean(axis=1)
  path = output or os.path.join(workdir, 'neighbors.png')
  draw(eval_pixels[chosen], train_pixels, ids, path)
  return {'path': path, 'agreement': agreement.tolist(),
          'query_labels': eval_labels[chosen].tolist(),
          'neighbor_labels': train_labels[ids].tolist()}


def define_flags():
  """Defines the command-line flags; only the command itself calls this."""
  flags.DEFINE_string('workdir', None, 'Workdir of a trained run.')
  flags.DEFINE_integer('queries', 8, 'Validation images to show, evenly spaced '
                       'over the evaluation split.')
  flags.DEFINE_integer('train_images', 20_000, 'Training images searched, the '
                       'first ones of the split; -1 searches all.')
  flags.DEFINE_string('output', None,
                      'PNG to write; default workdir/neighbors.png.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  result = render(FLAGS.workdir, FLAGS.queries, FLAGS.train_images,
                  FLAGS.output)
  print(f'Nearest neighbours by fc7 written to {result["path"]}. Share of '
        f'neighbours with the query\'s class: '
        f'{np.mean(result["agreement"]):.1%} '
        f'(lowest query {min(result["agreement"]):.1%}).')


if __name__ == '__main__':
  define_flags()
  flags.mark_flags_as_required(['workdir'])
  app.run(main)
