"""tf.data input pipelines: training stream, padded evaluation and device prefetch.

Training follows Krizhevsky et al. (2012): rescale the shorter side to 256,
centre-crop 256x256, take a random 227x227 window, flip it at random, add PCA
lighting and subtract the mean. For encoded images only the window is decoded
(`preprocessing.decode_and_random_crop`). Evaluation takes the centre 227
window of the 256 image, or the paper's ten views (`eval.crops=10`).

Batches carry the pixels as uint8 'image' and the per-example lighting shift
minus the mean as a float32 [3] 'offset'; `model_input` adds the two on the
devices. That keeps a float32 copy of every image out of the host pipeline
and quarters the bytes sent to the devices.

The randomness of every example is a function of (seed, epoch, example index),
so a resumed run continues the same stream and neither the order nor the
augmentation depends on the number of devices.
"""

import collections
import dataclasses
import json
import os

import tensorflow as tf
from absl import logging

from alexnet_jax import bad_images
from alexnet_jax import datasets
from alexnet_jax import preprocessing
from alexnet_jax import sharding

# Kept here for callers that build a source without a pipeline.
create_source = datasets.create_source
# Primes that separate the shuffle seeds of consecutive epochs and of shards.
_EPOCH_SEED_STRIDE = 1000003
_SHARD_SEED_STRIDE = 7919


def host_cores():
  """Returns the CPU cores this process may run on."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # Not Linux.
    return os.cpu_count() or 1


def configure_tensorflow(op_threads=2):
  """Hides GPUs from TensorFlow and bounds its own thread pools.

  Call it before TensorFlow runs any op. tf.data then never allocates
  accelerator memory, which JAX owns, and TensorFlow's inter- and intra-op
  pools use `op_threads` threads each. The input pipeline itself runs on the
  private pool that `dataset_options` sizes.
  """
  tf.config.set_visible_devices([], 'GPU')
  tf.config.threading.set_inter_op_parallelism_threads(op_threads)
  tf.config.threading.set_intra_op_parallelism_threads(op_threads)


def dataset_options(config):
  """Returns tf.data options with a private pool sized from the host's cores."""
  threads = config.input.threads
  options = tf.data.Options()
  options.threading.private_threadpool_size = (
      host_cores() if threads <= 0 else threads)
  options.threading.max_intra_op_parallelism = 1
  options.deterministic = True
  return options


@dataclasses.dataclass(frozen=True)
class Stats:
  """Pixel statistics the pipeline uses: mean on [0, 255], PCA on [0, 1]."""

  mean_rgb: tuple
  pca_eigval: tuple
  pca_eigvec: tuple


def input_stats(input_config) -> Stats:
  """Returns the config's pixel statistics, read from `stats_file` when set."""
  path = input_config.stats_file
  if not path:
    return Stats(tuple(input_config.mean_rgb), tuple(input_config.pca_eigval),
                 tuple(map(tuple, input_config.pca_eigvec)))
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(
        f'input.stats_file {path!r} not found. Write it with python -m '
        'alexnet_jax.tools.dataset_stats, or unset --config.input.stats_file.')
  with tf.io.gfile.GFile(path) as f:
    stats = json.load(f)
  return Stats(tuple(stats['mean_rgb']), tuple(stats['pca_eigval']),
               tuple(map(tuple, stats['pca_eigvec'])))


def _example_seed(seed, epoch, index):
  """Returns a stateless [2] seed for one example of one epoch."""
  base = tf.cast(tf.stack([tf.constant(seed, tf.int64),
                           tf.cast(epoch, tf.int64)]), tf.int32)
  return tf.random.experimental.stateless_fold_in(base,
                                                  tf.cast(index, tf.int32))


def _encoded_bytes(example, source):
  image = example['image']
  return tf.io.read_file(image) if source.from_files else image


def preprocess_train(image, seed, config, stats, encoded=False):
  """Applies the paper's training augmentation to one image.

  Args:
    image: uint8 [height, width, 3] pixels, or the encoded bytes if `encoded`.
    seed: [2] int32 stateless seed of this example and epoch.
    config: the run's config.
    stats: the `Stats` to use.
    encoded: whether `image` is an encoded file, of which only the window is
      decoded.

  Returns:
    (image, offset): the [input_size, input_size, 3] uint8 window and the
    float32 [3] to add to it, the lighting shift minus the mean.
  """
  inp, size = config.input, config.model.input_size
  crop_seed, flip_seed, light_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 3))
  if encoded:
    flip = False
    if inp.random_flip:
      flip = tf.random.stateless_uniform([], flip_seed) < 0.5
    image = preprocessing.decode_and_random_crop(
        image, crop_seed, inp.resize_size, size, flip)
  else:
    image = preprocessing.resize_shorter_side(image, inp.resize_size)
    image = preprocessing.center_crop(image, inp.resize_size)
    image = preprocessing.random_crop(image, size, crop_seed)
    if inp.random_flip:
      image = preprocessing.random_flip(image, flip_seed)
  # The lighting shift and the mean are one [3] offset, which `model_input`
  # adds on the devices.
  offset = -tf.constant(stats.mean_rgb, tf.float32)
  if inp.pca_lighting:
    alpha = preprocessing.random_pca_alpha(light_seed, inp.pca_alpha_std)
    offset += preprocessing.pca_shift(alpha, stats.pca_eigval,
                                      stats.pca_eigvec)
  image = preprocessing.to_uint8(image)
  image.set_shape([size, size, 3])
  return image, offset


def model_input(batch):
  """Returns a batch's float32 model input: its uint8 'image' plus its 'offset'.

  Works on NumPy and JAX arrays alike, for [batch, H, W, 3] images and for
  [batch, crops, H, W, 3] ones, where each example's offset applies to all
  its crops.
  """
  image, offset = batch['image'], batch['offset']
  offset = offset.reshape(offset.shape[:1] + (1,) * (image.ndim - 2) + (3,))
  return image.astype('float32') + offset.astype('float32')


def check_eval_crops(crops):
  """Raises unless `eval.crops` is 1 or 10."""
  if crops not in (1, 10):
    raise ValueError(f'eval.crops={crops} is invalid: use 1 (centre view) or '
                     '10 (corners, centre and their flips).')


def preprocess_eval(image, config, stats=None, crops=1):
  """Returns the evaluation views of one image and the offset to add to them.

  `stats` defaults to `input_stats(config.input)`.

  Returns:
    (views, offset): the uint8 centre view [size, size, 3], or the ten views
    [10, size, size, 3], and the float32 [3] offset, minus the mean.
  """
  inp, size = config.input, config.model.input_size
  stats = input_stats(inp) if stats is None else stats
  image = preprocessing.resize_shorter_side(image, inp.resize_size)
  image = preprocessing.to_uint8(
      preprocessing.center_crop(image, inp.resize_size))
  if crops == 10:
    image = preprocessing.ten_crop(image, size)
  else:
    check_eval_crops(crops)
    image = preprocessing.center_crop(image, size)
  image.set_shape(([10] if crops == 10 else []) + [size, size, 3])
  return image, -tf.constant(stats.mean_rgb, tf.float32)


def _example_name(source, example):
  """Returns the name of an example in bad-image reports."""
  if source.from_files:
    return example['image'].decode()
  return f'example {example["index"]}'


def _epoch_stream(source, shuffle_buffer, seed, epoch):
  """Returns one epoch of the shard in its shuffled order.

  Each example gets its epoch and its position in the epoch. An encoded
  source's epoch ends with a marker element at position `num_examples`.
  """
  epoch = tf.cast(epoch, tf.int64)
  shuffled = source.dataset.shuffle(
      min(shuffle_buffer, source.num_examples),
      seed=seed + _EPOCH_SEED_STRIDE * epoch, reshuffle_each_iteration=False)
  shuffled = shuffled.enumerate().map(
      lambda position, ex: dict(ex, epoch=epoch, position=position))
  if not source.encoded:
    return shuffled
  return shuffled.concatenate(_marker(source, epoch, source.num_examples))


def _marker(source, epoch, position):
  """Returns a one-element dataset that marks the end of an epoch."""
  spec = source.dataset.element_spec
  return tf.data.Dataset.from_tensors({
      'image': tf.constant('', tf.string),
      'label': tf.constant(0, spec['label'].dtype),
      'index': tf.constant(bad_images.END_OF_EPOCH, tf.int64),
      'epoch': tf.cast(epoch, tf.int64),
      'position': tf.constant(position, tf.int64)})


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
  source = datasets.create_source(config, True, shard, shards)
  seed, stats = config.seed, input_stats(config.input)
  size, buffer = config.model.input_size, config.input.shuffle_buffer
  per_shard = config.batch_size // shards
  shuffle_seed = seed + _SHARD_SEED_STRIDE * shard

  def epoch_names(epoch):
    stream = _epoch_stream(source, buffer, shuffle_seed, epoch)
    return [_example_name(source, ex) for ex in stream.as_numpy_iterator()
            if ex['index'] != bad_images.END_OF_EPOCH]

  log = bad_images.BadImageLog(config.input.on_bad_image, epoch_names)
  source.bad_image_log = log
  # NOTE: the start is counted in examples read, so when bad images were
  # skipped before it, a resumed stream starts that many examples late.
  start_epoch, skip = divmod(start_step * per_shard,
                             max(source.num_examples, 1))
  dataset = tf.data.Dataset.range(start_epoch, 1 << 30).flat_map(
      lambda epoch: _epoch_stream(source, buffer, shuffle_seed, epoch))
  dataset = dataset.skip(skip)

  def process(example):
    seed_pair = _example_seed(seed, example['epoch'], example['index'])
    image = (_encoded_bytes(example, source) if source.encoded
             else example['image'])
    image, offset = preprocess_train(image, seed_pair, config, stats,
                                     encoded=source.encoded)
    return {'image': image, 'offset': offset,
            'label': tf.cast(example['label'], tf.int32),
            'index': example['index']}

  def placeholder():
    return {'image': tf.zeros([size, size, 3], tf.uint8),
            'offset': tf.zeros([3], tf.float32),
            'label': tf.constant(0, tf.int32),
            'index': tf.constant(bad_images.END_OF_EPOCH, tf.int64)}

  if source.encoded:
    dataset = bad_images.map_or_report(
        dataset, process, placeholder, log,
        parallel=dataset_options(config).threading.private_threadpool_size,
        start=(start_epoch, skip))
  else:
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
    (dataset, source) where the dataset yields {'image', 'offset', 'label',
    'index'} batches, 'index' being each example's position in the split, and
    source is this process's first shard. `source.bad_image_log` records the
    images that shard skipped.
  """
  check_eval_crops(config.eval.crops)
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
  dataset = dataset.prefetch(tf.data.AUTOTUNE)
  return dataset.with_options(dataset_options(config)), streams[0][1]


def num_eval_batches(total, local_batch_size, process_count):
  """Returns the batches every process runs so all examples fit, padded."""
  largest_shard = -(-total // process_count)
  return max(1, -(-largest_shard // local_batch_size))


def create_eval_dataset(config, local_batch_size, process_index,
                        process_count):
  """Builds the evaluation batches, padded and masked, never dropped.

  Every process yields the same number of batches. Padding examples have
  mask 0 so each real example is counted exactly once. Batches contain 'image',
  'offset', 'label' and 'mask'. With `eval.crops=10` each image is
  [10, size, size, 3]. An image that fails to decode raises,
  naming it, whatever `input.on_bad_image` says, because every example of
  the split must be scored.
  """
  source = datasets.create_source(config, False, process_index, process_count)
  stats, crops = input_stats(config.input), config.eval.crops
  dataset = source.dataset
  local_count = source.num_examples
  if config.num_eval_examples > 0:
    dataset = dataset.take(config.num_eval_examples // process_count)
    total = config.num_eval_examples // process_count * process_count
    local_count = min(local_count, config.num_eval_examples // process_count)
  else:
    total = source.total_examples
  steps = num_eval_batches(total, local_batch_size, process_count)
  size = config.model.input_size
  shape = ([10] if crops == 10 else []) + [size, size, 3]

  def process(example):
    image = example['image']
    if source.encoded:
      image = preprocessing.decode_rgb(_encoded_bytes(example, source))
    image, offset = preprocess_eval(image, config, stats, crops)
    return {'image': image, 'offset': offset,
            'label': tf.cast(example['label'], tf.int32),
            'mask': tf.constant(1.0, tf.float32)}

  def placeholder():
    return {'image': tf.zeros(shape, tf.uint8),
            'offset': tf.zeros([3], tf.float32),
            'label': tf.constant(0, tf.int32),
            'mask': tf.constant(0.0, tf.float32)}

  if source.encoded:
    log = bad_images.BadImageLog(
        'raise', lambda epoch: [_example_name(source, ex)
                                for ex in dataset.as_numpy_iterator()])
    stream = dataset.enumerate().map(
        lambda position, ex: dict(ex, epoch=tf.constant(0, tf.int64),
                                  position=position))
    stream = stream.concatenate(_marker(source, 0, local_count))
    dataset = bad_images.map_or_report(
        stream, process, placeholder, log,
        parallel=dataset_options(config).threading.private_threadpool_size)
  else:
    dataset = dataset.map(process, num_parallel_calls=tf.data.AUTOTUNE)
  padding = tf.data.Dataset.from_tensors(placeholder()).repeat()
  dataset = dataset.concatenate(padding).batch(local_batch_size).take(steps)
  dataset = dataset.prefetch(tf.data.AUTOTUNE)
  return dataset.with_options(dataset_options(config)), total


def prefetch_to_mesh(batches, mesh, size=2):
  """Yields (global batch on `mesh`, example indices), `size` batches ahead.

  The transfers are asynchronous, so the next batches travel to the devices
  while the current step runs. A batch's 'index' entry stays on the host and
  is yielded second (None when the batch has none).

  Args:
    batches: iterator of per-process numpy batches.
    mesh: the ('data', 'model') mesh.
    size: batches in flight ahead of the one returned.
  """
  queue = collections.deque()
  for batch in batches:
    indices = batch.pop('index', None)
    queue.append((sharding.shard_batch(batch, mesh), indices))
    if len(queue) > size:
      yield queue.popleft()
  while queue:
    yield queue.popleft()
