"""tf.data input pipelines: ILSVRC-2012 through TFDS, and the embedded digits.

Training follows the paper: rescale the shorter side to 256, centre-crop
256x256, take a random 227x227 window, flip it at random, add PCA lighting
and subtract the mean. Evaluation takes the centre 227 window of the 256 image.

Each process reads a disjoint shard. The randomness of every example is a
function of (seed, epoch, example index), so a resumed run continues the same
stream and the augmentation does not depend on the number of devices.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

from alexnet_jax import preprocessing

IMAGENET_TARS = ('ILSVRC2012_img_train.tar', 'ILSVRC2012_img_val.tar')
DIGITS_EVAL_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0


@dataclasses.dataclass
class Source:
  """One process's shard of a split, before decoding and augmentation."""

  dataset: tf.data.Dataset  # Elements: {'image', 'label', 'index'}.
  num_examples: int  # Examples in this process's shard.
  total_examples: int  # Examples in the whole split.
  encoded: bool  # Whether 'image' holds encoded bytes (else uint8 pixels).


def _shard_bounds(total, process_index, process_count):
  """Returns [start, end) of a process's contiguous shard of `total` items."""
  start = total * process_index // process_count
  end = total * (process_index + 1) // process_count
  return start, end


def load_digits_arrays(train: bool):
  """Returns the scikit-learn digits as uint8 RGB images and int labels.

  The 8x8 images with values 0..16 are scaled to 0..255. A fixed,
  class-stratified 20% of the 1797 images is held out for evaluation.
  """
  from sklearn import datasets as sk_datasets  # pylint: disable=g-import-not-at-top
  from sklearn import model_selection  # pylint: disable=g-import-not-at-top

  digits = sk_datasets.load_digits()
  images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
  images = np.repeat(images[..., None], 3, axis=-1)
  labels = digits.target.astype(np.int64)
  train_idx, eval_idx = model_selection.train_test_split(
      np.arange(len(labels)), test_size=DIGITS_EVAL_FRACTION,
      random_state=DIGITS_SPLIT_SEED, stratify=labels)
  index = np.sort(train_idx if train else eval_idx)
  return images[index], labels[index]


def _digits_source(train, process_index, process_count):
  images, labels = load_digits_arrays(train)
  start, end = _shard_bounds(len(labels), process_index, process_count)
  dataset = tf.data.Dataset.from_tensor_slices({
      'image': images[start:end],
      'label': labels[start:end],
      'index': np.arange(start, end, dtype=np.int64),
  })
  return Source(dataset, end - start, len(labels), encoded=False)


def check_imagenet_available(builder, manual_dir):
  """Raises a clear error when ILSVRC-2012 is neither prepared nor downloadable."""
  if builder.is_prepared():
    return
  missing = [name for name in IMAGENET_TARS
             if not tf.io.gfile.exists(os.path.join(manual_dir, name))]
  if missing:
    raise FileNotFoundError(
        f'ILSVRC-2012 is not prepared in data_dir={builder.data_dir_root!r} '
        f'and the manual dir {manual_dir!r} lacks {", ".join(missing)}. '
        f'Download {" and ".join(IMAGENET_TARS)} from image-net.org into '
        'that folder, or set --config.manual_dir to the folder that holds '
        'them.')


def imagenet_builder(config):
  """Returns the TFDS `imagenet2012` builder, preparing it from the manual dir."""
  builder = tfds.builder('imagenet2012', data_dir=config.data_dir)
  manual_dir = config.manual_dir or os.path.join(builder.data_dir_root,
                                                 'downloads', 'manual')
  check_imagenet_available(builder, manual_dir)
  if not builder.is_prepared():
    logging.info('Preparing imagenet2012 from %s', manual_dir)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  return builder


def _tfds_source(config, split, process_index, process_count):
  builder = imagenet_builder(config)
  total = builder.info.splits[split].num_examples
  start, end = _shard_bounds(total, process_index, process_count)
  dataset = builder.as_dataset(
      split=f'{split}[{start}:{end}]', shuffle_files=False,
      decoders={'image': tfds.decode.SkipDecoding()})
  index = tf.data.Dataset.range(start, end)
  dataset = tf.data.Dataset.zip(dataset, index).map(
      lambda ex, i: {'image': ex['image'], 'label': ex['label'], 'index': i})
  return Source(dataset, end - start, total, encoded=True)


def create_source(config, train, process_index, process_count) -> Source:
  """Returns this process's shard of the training or evaluation split."""
  if config.dataset == 'digits':
    return _digits_source(train, process_index, process_count)
  if config.dataset == 'imagenet2012':
    split = config.train_split if train else config.eval_split
    return _tfds_source(config, split, process_index, process_count)
  raise ValueError(f"Unknown dataset {config.dataset!r}: use 'imagenet2012' "
                   "or 'digits'.")


def _example_seed(seed, epoch, index):
  """Returns a stateless [2] seed for one example of one epoch."""
  base = tf.cast(tf.stack([tf.constant(seed, tf.int64),
                           tf.cast(epoch, tf.int64)]), tf.int32)
  return tf.random.experimental.stateless_fold_in(base,
                                                  tf.cast(index, tf.int32))


def _decode(example, encoded):
  image = example['image']
  return preprocessing.decode_rgb(image) if encoded else image


def preprocess_train(image, seed, config):
  """Applies the paper's training augmentation to one decoded image."""
  inp, size = config.input, config.model.input_size
  crop_seed, flip_seed, light_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 3))
  image = preprocessing.resize_shorter_side(image, inp.resize_size)
  image = preprocessing.center_crop(image, inp.resize_size)
  image = preprocessing.random_crop(image, size, crop_seed)
  if inp.random_flip:
    image = preprocessing.random_flip(image, flip_seed)
  if inp.pca_lighting:
    image = preprocessing.random_pca_lighting(
        image, light_seed, inp.pca_alpha_std, inp.pca_eigval, inp.pca_eigvec)
  image = preprocessing.subtract_mean(image, inp.mean_rgb)
  image.set_shape([size, size, 3])
  return image


def preprocess_eval(image, config):
  """Takes the centre crop of the rescaled image, as the paper's single view."""
  inp, size = config.input, config.model.input_size
  image = preprocessing.resize_shorter_side(image, inp.resize_size)
  image = preprocessing.center_crop(image, inp.resize_size)
  image = preprocessing.center_crop(image, size)
  image = preprocessing.subtract_mean(image, inp.mean_rgb)
  image.set_shape([size, size, 3])
  return image


def train_shard_range(config, rows, process_count):
  """Returns the training shards [first, last) that feed global-batch rows `rows`.

  The training split is cut into `input.train_shards` contiguous shards (0
  means one per process). Shard s supplies rows [s * b, (s + 1) * b) of every
  global batch, where b = batch_size / shards, so the global batches do not
  depend on how the shards are spread over processes.

  Args:
    config: the run's config.
    rows: [start, end) rows of the global batch that this process feeds.
    process_count: number of processes.

  Returns:
    (first, last, shards).

  Raises:
    ValueError: if the shards do not split the global batch at the
      process's row boundaries.
  """
  shards = config.input.train_shards or process_count
  start, end = rows
  if shards < 1 or config.batch_size % shards:
    raise ValueError(
        f'input.train_shards={shards} does not divide batch_size='
        f'{config.batch_size}. Set --config.input.train_shards to a divisor '
        'of the batch size, or 0 for one shard per process.')
  per_shard = config.batch_size // shards
  if start % per_shard or end % per_shard:
    raise ValueError(
        f'This process feeds rows [{start}, {end}) of the global batch, which '
        f'do not fall on the boundaries of the {shards} training shards of '
        f'{per_shard} rows each. Set --config.input.train_shards to a '
        f'multiple of the process count ({process_count}), or 0.')
  return start // per_shard, end // per_shard, shards


def _shard_batches(config, shard, shards, start_step):
  """Builds the endless batch stream of one training shard."""
  source = create_source(config, True, shard, shards)
  seed, per_shard = config.seed, config.batch_size // shards

  def epoch_stream(epoch):
    shuffled = source.dataset.shuffle(
        min(config.input.shuffle_buffer, source.num_examples),
        seed=seed + 1000003 * epoch + 7919 * shard,
        reshuffle_each_iteration=False)
    return shuffled.map(lambda ex: dict(ex, epoch=epoch))

  dataset = tf.data.Dataset.range(1 << 30).flat_map(epoch_stream)
  dataset = dataset.skip(start_step * per_shard)

  def process(example):
    image = _decode(example, source.encoded)
    seed_pair = _example_seed(seed, example['epoch'], example['index'])
    return {'image': preprocess_train(image, seed_pair, config),
            'label': tf.cast(example['label'], tf.int32),
            'index': example['index']}

  dataset = dataset.map(process, num_parallel_calls=tf.data.AUTOTUNE,
                        deterministic=True)
  return dataset.batch(per_shard, drop_remainder=True), source


def create_train_dataset(config, local_batch_size, process_index,
                         process_count, start_step=0, rows=None):
  """Builds an endless stream of local training batches.

  Args:
    config: the run's config.
    local_batch_size: examples per batch on this process.
    process_index: this process's index.
    process_count: number of processes.
    start_step: first step of the stream, to resume a run.
    rows: [start, end) rows of the global batch that this process feeds
      (`sharding.process_batch_rows`). Default: the process's block of
      `local_batch_size` rows in process order.

  Returns:
    (dataset, source) where the dataset yields {'image', 'label', 'index'}
    batches, 'index' being each example's position in the split, and source
    is this process's first shard.
  """
  if rows is None:
    rows = (process_index * local_batch_size,
            (process_index + 1) * local_batch_size)
  if rows[1] - rows[0] != local_batch_size:
    raise ValueError(f'Rows {rows} do not hold {local_batch_size} examples.')
  first, last, shards = train_shard_range(config, rows, process_count)
  streams = [_shard_batches(config, shard, shards, start_step)
             for shard in range(first, last)]
  dataset = streams[0][0]
  if len(streams) > 1:
    dataset = tf.data.Dataset.zip(tuple(stream for stream, _ in streams)).map(
        lambda *batches: {key: tf.concat([b[key] for b in batches], 0)
                          for key in batches[0]})
  return dataset.prefetch(tf.data.AUTOTUNE), streams[0][1]


def num_eval_batches(total, local_batch_size, process_count):
  """Returns the batches every process runs so all examples fit, padded."""
  largest_shard = -(-total // process_count)
  return max(1, -(-largest_shard // local_batch_size))


def create_eval_dataset(config, local_batch_size, process_index,
                        process_count):
  """Builds the evaluation batches, padded and masked, never dropped.

  Every process yields the same number of batches. Padding examples have
  mask 0 so each real example is counted exactly once.
  """
  source = create_source(config, False, process_index, process_count)
  dataset = source.dataset
  if config.num_eval_examples > 0:
    dataset = dataset.take(config.num_eval_examples // process_count)
    total = config.num_eval_examples // process_count * process_count
  else:
    total = source.total_examples
  steps = num_eval_batches(total, local_batch_size, process_count)

  def process(example):
    image = _decode(example, source.encoded)
    return {'image': preprocess_eval(image, config),
            'label': tf.cast(example['label'], tf.int32),
            'mask': tf.constant(1.0, tf.float32)}

  dataset = dataset.map(process, num_parallel_calls=tf.data.AUTOTUNE)
  size = config.model.input_size
  padding = tf.data.Dataset.from_tensors({
      'image': tf.zeros([size, size, 3], tf.float32),
      'label': tf.constant(0, tf.int32),
      'mask': tf.constant(0.0, tf.float32)}).repeat()
  dataset = dataset.concatenate(padding).batch(local_batch_size).take(steps)
  return dataset.prefetch(tf.data.AUTOTUNE), total
