r"""Measures the training input pipeline's throughput on real photographs.

Writes a temporary image folder of photographs bundled with scikit-image,
cropped and re-encoded at an ImageNet-typical 500x375, JPEG quality 90, and
measures in one run, alternating and repeated:

* pipeline: `input_pipeline.create_train_dataset` (read, decode the window,
  resize to 227, flip, round to uint8, the PCA lighting and mean offset,
  batching);
* pil_numpy: the same operations with PIL and NumPy in a process pool of the
  same size (full decode, rescale the shorter side to 256, centre 256 square,
  random 227 window, flip, the PCA lighting and mean offset), also yielding
  uint8 pixels and a per-image offset;
* decode_only: tf.data reading and fully decoding the files into uint8
  batches, nothing else, on the same thread pool: the ceiling for a pipeline
  that decodes every pixel. (Returning only the decoded shape would let
  TensorFlow's graph optimizer drop the decode.)

Prints wall-clock images/s, images per CPU-second ("per core": the CPU time
of every thread and worker process, which other load on the machine barely
changes), CPU milliseconds per image and the peak resident memory.

    python benchmarks/input_pipeline.py --num_files=300 --images=1200
"""

import datetime
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np
from PIL import Image
import skimage.data

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from alexnet_jax import input_pipeline  # pylint: disable=g-import-not-at-top
from configs import ilsvrc2012  # pylint: disable=g-import-not-at-top
from configs import imagefolder  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
flags.DEFINE_integer('num_files', 300, 'JPEG files in the temporary folder.')
flags.DEFINE_integer('images', 1200, 'Images per timed measurement.')
flags.DEFINE_integer('repeats', 3, 'Timed measurements of each pipeline.')
flags.DEFINE_integer('batch_size', 32, 'Images per batch.')
flags.DEFINE_integer('threads', -1, 'Workers; -1 uses the cores available.')

PHOTOS = ('astronaut', 'chelsea', 'coffee', 'rocket', 'immunohistochemistry',
          'cat')
SIZE = (500, 375)


def write_folder(root, num_files, seed=0):
  """Writes num_files 500x375 quality-90 JPEGs into 10 class folders."""
  rng = np.random.default_rng(seed)
  photos = [getattr(skimage.data, name)() for name in PHOTOS]
  paths = []
  for i in range(num_files):
    photo = photos[i % len(photos)]
    height, width = photo.shape[:2]
    crop_h = int(rng.integers(height * 6 // 10, height + 1))
    crop_w = min(width, crop_h * 4 // 3)
    top = int(rng.integers(0, height - crop_h + 1))
    left = int(rng.integers(0, width - crop_w + 1))
    image = Image.fromarray(photo[top:top + crop_h, left:left + crop_w])
    image = image.convert('RGB').resize(SIZE, Image.BICUBIC)
    for split in ('train', 'val'):
      class_dir = os.path.join(root, split, f'class{i % 10}')
      os.makedirs(class_dir, exist_ok=True)
      path = os.path.join(class_dir, f'{i:05d}.jpg')
      if split == 'train':
        image.save(path, 'JPEG', quality=90)
        paths.append(path)
      elif i < 10:
        image.save(path, 'JPEG', quality=90)
  return paths


def pil_example(args):
  """Applies the training augmentation to one file with PIL and NumPy."""
  path, seed = args
  rng = np.random.default_rng(seed)
  config = ilsvrc2012.get_config().input
  with Image.open(path) as image:
    image = image.convert('RGB')
    scale = 256 / min(image.size)
    size = (max(256, round(image.size[0] * scale)),
            max(256, round(image.size[1] * scale)))
    image = image.resize(size, Image.BILINEAR)
  pixels = np.asarray(image)
  top = (pixels.shape[0] - 256) // 2 + rng.integers(0, 30)
  left = (pixels.shape[1] - 256) // 2 + rng.integers(0, 30)
  pixels = pixels[top:top + 227, left:left + 227]
  if rng.random() < 0.5:
    pixels = pixels[:, ::-1]
  alpha = rng.normal(0, config.pca_alpha_std, 3)
  shift = np.asarray(config.pca_eigvec) @ (alpha * config.pca_eigval) * 255
  return (np.ascontiguousarray(pixels),
          (shift - np.asarray(config.mean_rgb)).astype(np.float32))


def worker_cpu_seconds(pool):
  """Returns the user + system CPU seconds the pool's worker processes used."""
  ticks = os.sysconf('SC_CLK_TCK')
  total = 0.0
  for worker in pool._pool:  # pylint: disable=protected-access
    with open(f'/proc/{worker.pid}/stat') as f:
      fields = f.read().rsplit(')', 1)[1].split()
    total += (int(fields[11]) + int(fields[12])) / ticks
  return total


def time_batches(batches, batch_size, images, cpu_clock=time.process_time):
  """Returns (images/s, CPU seconds per image) over `images` images, after one batch."""
  next(batches)
  count = 0
  start, cpu_start = time.perf_counter(), cpu_clock()
  while count < images:
    next(batches)
    count += batch_size
  wall, cpu = time.perf_counter() - start, cpu_clock() - cpu_start
  return count / wall, cpu / count


def pipeline_rate(root, threads):
  config = imagefolder.get_config()
  config.data_dir = root
  config.model.num_classes = 10
  config.input.threads = threads
  config.batch_size = FLAGS.batch_size  # One process feeds the whole batch.
  dataset, _ = input_pipeline.create_train_dataset(config, FLAGS.batch_size,
                                                   0, 1)
  return time_batches(dataset.as_numpy_iterator(), FLAGS.batch_size,
                      FLAGS.images)


def decode_only_rate(paths, threads):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  config = imagefolder.get_config()
  config.input.threads = threads
  dataset = tf.data.Dataset.from_tensor_slices(paths).repeat()
  dataset = dataset.map(
      lambda path: tf.io.decode_jpeg(tf.io.read_file(path), channels=3),
      num_parallel_calls=threads, deterministic=True)
  dataset = dataset.batch(FLAGS.batch_size).prefetch(2)
  dataset = dataset.with_options(input_pipeline.dataset_options(config))
  return time_batches(dataset.as_numpy_iterator(), FLAGS.batch_size,
                      FLAGS.images)


def pil_rate(paths, pool):
  def batches():
    seed = 0
    while True:
      args = [(paths[(seed + i) % len(paths)], seed + i)
              for i in range(FLAGS.batch_size)]
      seed += FLAGS.batch_size
      pixels, offsets = zip(*pool.map(pil_example, args, chunksize=4))
      yield np.stack(pixels), np.stack(offsets)
  clock = lambda: time.process_time() + worker_cpu_seconds(pool)
  return time_batches(batches(), FLAGS.batch_size, FLAGS.images, clock)


def main(argv):
  del argv
  input_pipeline.configure_tensorflow()
  cores = input_pipeline.host_cores()
  threads = cores if FLAGS.threads <= 0 else FLAGS.threads
  rates = {'pipeline': [], 'pil_numpy': [], 'decode_only': []}
  with tempfile.TemporaryDirectory() as root, multiprocessing.Pool(
      threads) as pool:
    paths = write_folder(root, FLAGS.num_files)
    for _ in range(FLAGS.repeats):
      rates['pipeline'].append(pipeline_rate(root, threads))
      rates['pil_numpy'].append(pil_rate(paths, pool))
      rates['decode_only'].append(decode_only_rate(paths, threads))

  lines = [f'{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} '
           f'UTC, {platform.processor() or platform.machine()}, {cores} '
           f'cores, {threads} workers, {FLAGS.num_files} files 500x375 q90, '
           f'batch {FLAGS.batch_size}, median of {FLAGS.repeats}',
           f'{"":<12} {"images/s":>9} {"per core":>9} {"CPU ms":>7}']

  wall = {name: statistics.median(r[0] for r in runs)
          for name, runs in rates.items()}
  per_core = {name: 1.0 / statistics.median(r[1] for r in runs)
              for name, runs in rates.items()}
  for name in rates:
    lines.append(f'{name:<12} {wall[name]:9.1f} {per_core[name]:9.1f} '
                 f'{1000 / per_core[name]:7.2f}')
  lines.append(
      'per core, pipeline / pil_numpy: '
      f'{per_core["pipeline"] / per_core["pil_numpy"]:.2f}x; '
      f'pipeline / decode_only: '
      f'{per_core["pipeline"] / per_core["decode_only"]:.2f}x')

  self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
  lines.append(f'peak RSS: benchmark process {self_kb / 1024:.0f} MiB, '
               f'largest PIL worker {child_kb / 1024:.0f} MiB')
  print('\n'.join(lines))


if __name__ == '__main__':
  app.run(main)
