"""Data sources: TFDS `imagenet2012`, a folder of class sub-folders, and digits.

A source is one process's shard of a split, before decoding and augmentation.
Each example carries its index in the whole split, from which the pipeline
derives its randomness, and each process reads a disjoint contiguous range of
indices, so the processes together cover the split exactly once.
"""

import dataclasses
import os
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

IMAGENET_TARS = ('ILSVRC2012_img_train.tar', 'ILSVRC2012_img_val.tar')
DIGITS_EVAL_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0
# Files an image folder lists, by lower-case extension. Other files are ignored.
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif')
# Seed of the fixed permutation that spreads an image folder's classes over
# the index range, so that contiguous per-process shards and a bounded
# shuffle buffer both see every class.
FOLDER_ORDER_SEED = 0


@dataclasses.dataclass
class Source:
  """One process's shard of a split, before decoding and augmentation."""

  dataset: tf.data.Dataset  # Elements: {'image', 'label', 'index'}.
  num_examples: int  # Examples in this process's shard.
  total_examples: int  # Examples in the whole split.
  encoded: bool  # Whether 'image' contains encoded bytes (else uint8 pixels).
  from_files: bool = False  # Whether 'image' is a file path to read.
  bad_image_log: Any = None  # The training stream's `bad_images.BadImageLog`.


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


def folder_classes(root):
  """Returns the sorted class names of an image folder's training split."""
  train_dir = os.path.join(root, 'train')
  if not tf.io.gfile.isdir(train_dir):
    raise FileNotFoundError(
        f'Image folder {root!r} has no train/ sub-folder. Set '
        '--config.data_dir to a folder holding train/<class>/<image> and '
        'val/<class>/<image>.')
  classes = sorted(name.rstrip('/') for name in tf.io.gfile.listdir(train_dir)
                   if tf.io.gfile.isdir(os.path.join(train_dir, name)))
  if not classes:
    raise FileNotFoundError(f'{train_dir!r} contains no class sub-folders.')
  return classes


def list_image_folder(root, split):
  """Lists (paths, labels) of one split of an image folder, in a fixed order.

  Labels number the training classes in sorted order. The files are put in a
  fixed pseudo-random order that depends on nothing but the file list.

  Raises:
    FileNotFoundError: if the split's folder is missing or contains no images.
    ValueError: if the split has a class the training split lacks.
  """
  classes = folder_classes(root)
  split_dir = os.path.join(root, split)
  if not tf.io.gfile.isdir(split_dir):
    raise FileNotFoundError(
        f'Image folder {root!r} has no {split}/ sub-folder. Add it, or set '
        '--config.eval_split (or train_split) to the sub-folder to read.')
  names = sorted(name.rstrip('/') for name in tf.io.gfile.listdir(split_dir)
                 if tf.io.gfile.isdir(os.path.join(split_dir, name)))
  unknown = sorted(set(names) - set(classes))
  if unknown:
    raise ValueError(f'{split_dir!r} has classes {unknown} that train/ lacks.')
  paths, labels = [], []
  for name in names:
    class_dir = os.path.join(split_dir, name)
    for file_name in sorted(tf.io.gfile.listdir(class_dir)):
      if os.path.splitext(file_name)[1].lower() in IMAGE_EXTENSIONS:
        paths.append(os.path.join(class_dir, file_name))
        labels.append(classes.index(name))
  if not paths:
    raise FileNotFoundError(f'{split_dir!r} contains no image files '
                            f'({", ".join(IMAGE_EXTENSIONS)}).')
  order = np.random.default_rng(FOLDER_ORDER_SEED).permutation(len(paths))
  return np.asarray(paths)[order], np.asarray(labels, np.int64)[order]


def _folder_source(config, split, process_index, process_count, check_labels):
  paths, labels = list_image_folder(config.data_dir, split)
  num_classes = len(folder_classes(config.data_dir))
  if check_labels and num_classes != config.model.num_classes:
    raise ValueError(
        f'{config.data_dir!r} has {num_classes} classes in train/ but '
        f'model.num_classes={config.model.num_classes}. Set '
        f'--config.model.num_classes={num_classes}.')
  start, end = _shard_bounds(len(paths), process_index, process_count)
  dataset = tf.data.Dataset.from_tensor_slices({
      'image': paths[start:end],
      'label': labels[start:end],
      'index': np.arange(start, end, dtype=np.int64),
  })
  return Source(dataset, end - start, len(paths), encoded=True,
                from_files=True)


def create_source(config, train, process_index, process_count,
                  check_labels=True) -> Source:
  """Returns this process's shard of the training or evaluation split.

  With `check_labels`, an image folder whose class count differs from
  model.num_classes raises.
  """
  split = config.train_split if train else config.eval_split
  if config.dataset == 'digits':
    return _digits_source(train, process_index, process_count)
  if config.dataset == 'imagenet2012':
    return _tfds_source(config, split, process_index, process_count)
  if config.dataset == 'imagefolder':
    if not config.data_dir:
      raise ValueError("dataset='imagefolder' needs --config.data_dir, the "
                       'folder holding train/ and val/.')
    return _folder_source(config, split, process_index, process_count,
                          check_labels)
  raise ValueError(f"Unknown dataset {config.dataset!r}: use 'imagenet2012', "
                   "'imagefolder' or 'digits'.")
