"""Miniature ILSVRC-2012 manual dir for the real TFDS `imagenet2012` builder.

`build_manual_dir` writes `ILSVRC2012_img_train.tar` and
`ILSVRC2012_img_val.tar` laid out as the real archives are, so the unmodified
builder from tensorflow-datasets 4.9.10 reads them:

* The train tar contains one inner tar per synset (`n01440764.tar`), and each
  inner tar contains flat `n01440764_<id>.JPEG` files. The builder takes the
  label from the inner tar's name.
* The val tar contains flat `ILSVRC2012_val_00000001.JPEG` ... files. The
  builder sorts the member names and zips them with the lines of its bundled
  `validation_labels.txt`, so the k-th name in sorted order gets line k. The
  fixture writes the contiguous prefix `..._00000001` to `..._<num_val>` (in
  shuffled tar order, as the real tar is not sorted), so each file gets the
  label that belongs to its number in the full set.

The images are photographs bundled with scikit-image (`skimage.data`),
randomly cropped, resized and re-encoded with PIL at quality 90. Their
content does not depict the synset they are filed under. Three quirks of the
real data set are reproduced:

* a greyscale JPEG in each split,
* a CMYK JPEG saved under the first name in the builder's `CMYK_IMAGES`,
* a PNG saved under the name in the builder's `PNG_IMAGES` (a `.JPEG` name).

The builder re-encodes the last two as RGB JPEG by file name, so the synsets
of those two files are always among the chosen classes.

No network access: tensorflow-datasets 4.9.10 ships with GCS access disabled
(`tensorflow_datasets.core.utils.gcs_utils._is_gcs_disabled = True`), so
neither `tfds.builder` (dataset info from `gs://tfds-data`) nor
`download_and_prepare` (prepared copies on GCS) reaches out. On top of that,
`prepare_imagenet2012` passes `try_gcs=False` and `try_download_gcs=False`,
and the builder reads only `manual_dir`. No environment variable is needed:
the tests pass inside a network namespace without interfaces (`unshare -n`).
"""

import hashlib
import io
import os
import tarfile
import time

from absl import logging
import numpy as np
from PIL import Image
import skimage.data
import tensorflow_datasets as tfds
from tensorflow_datasets.datasets.imagenet2012 import (
    imagenet2012_dataset_builder as imagenet_builder,
)
from tensorflow_datasets.datasets.imagenet2012 import imagenet_common

TRAIN_TAR = 'ILSVRC2012_img_train.tar'
VAL_TAR = 'ILSVRC2012_img_val.tar'

# Bundled with tensorflow-datasets, one synset per line, in the order of the
# 50,000 validation files sorted by name.
_VALIDATION_LABELS_FILE = 'datasets/imagenet2012/validation_labels.txt'
_NUM_VALIDATION_IMAGES = 50_000

# Train file ids are drawn from [1, _MAX_TRAIN_ID), like `n01440764_10026`.
_MAX_TRAIN_ID = 20_000

# Photographs that ship inside scikit-image, so loading them needs no network.
# Other `skimage.data` images (for example `eagle`) are fetched on first use.
_PHOTO_NAMES = (
    'astronaut', 'coffee', 'chelsea', 'rocket', 'immunohistochemistry',
)

# (width, height) of the encoded images. Each run of len(_IMAGE_SIZES) images
# uses every size once, in a random order. The list mixes typical ImageNet
# sizes with images under 227 pixels on a side, smaller than one 227x227
# training crop.
_IMAGE_SIZES = (
    (500, 375), (200, 150), (375, 500), (160, 213),
    (500, 333), (226, 300), (640, 480), (333, 500),
)

_JPEG_QUALITY = 90


def _quirk_file_names():
  """Returns (cmyk_file_name, png_file_name) from the builder's fix lists."""
  return imagenet_builder.CMYK_IMAGES[0], imagenet_builder.PNG_IMAGES[0]


def label_names():
  """Returns the 1000 synset ids in label order, as the builder reads them."""
  names_file = imagenet_common.label_names_file()
  return tfds.features.ClassLabel(names_file=names_file).names


def validation_synsets(num_val):
  """Returns the bundled synsets of the first `num_val` validation files.

  Args:
    num_val: Number of files, named `ILSVRC2012_val_00000001.JPEG` onwards.

  Returns:
    List of synset ids, entry k for the k-th file name in sorted order.
  """
  path = tfds.core.tfds_path(_VALIDATION_LABELS_FILE)
  lines = path.read_text().strip().splitlines()
  return lines[:num_val]


def _choose_synsets(names, num_classes):
  """Returns `num_classes` synsets sorted by label.

  They are the synsets of the CMYK and PNG files plus the lowest-numbered
  others.
  """
  cmyk_name, png_name = _quirk_file_names()
  chosen = [cmyk_name.split('_')[0], png_name.split('_')[0]]
  for synset in names:
    if len(chosen) >= num_classes:
      break
    if synset not in chosen:
      chosen.append(synset)
  return sorted(chosen, key=names.index)


def _load_photos():
  return [getattr(skimage.data, name)() for name in _PHOTO_NAMES]


def _render(photo, size, rng):
  """Returns a random crop of `photo` resized to `size` as an RGB PIL image."""
  height, width = photo.shape[:2]
  crop_h = int(height * rng.uniform(0.5, 1.0))
  crop_w = int(width * rng.uniform(0.5, 1.0))
  top = int(rng.integers(0, height - crop_h + 1))
  left = int(rng.integers(0, width - crop_w + 1))
  crop = Image.fromarray(photo[top:top + crop_h, left:left + crop_w])
  return crop.resize(size, Image.Resampling.BILINEAR)


def _encode(image, mode, image_format):
  """Encodes a PIL image in the given colour mode and file format."""
  buffer = io.BytesIO()
  converted = image.convert(mode)
  if image_format == 'JPEG':
    converted.save(buffer, format='JPEG', quality=_JPEG_QUALITY)
  else:
    converted.save(buffer, format=image_format)
  return buffer.getvalue()


def _make_image(file_name, label, synset, mode, image_format, state):
  """Renders and encodes one image.

  Args:
    file_name: Member name inside its tar.
    label: Integer label the builder assigns to this file.
    synset: Synset id of `label`.
    mode: PIL colour mode to save in: 'RGB', 'L' or 'CMYK'.
    image_format: 'JPEG' or 'PNG'.
    state: Dict with the photos, the rng and the sizes left in this run.

  Returns:
    (record, encoded_bytes), where record describes the file.
  """
  if not state['sizes']:
    order = state['rng'].permutation(len(_IMAGE_SIZES))
    state['sizes'] = [_IMAGE_SIZES[i] for i in order]
  width, height = state['sizes'].pop()
  photo = state['photos'][int(state['rng'].integers(len(state['photos'])))]
  data = _encode(_render(photo, (width, height), state['rng']), mode,
                 image_format)
  record = {
      'file_name': file_name,
      'label': label,
      'synset': synset,
      'width': width,
      'height': height,
      'mode': mode,
      'format': image_format,
      'sha256': hashlib.sha256(data).hexdigest(),
  }
  return record, data


def _add_member(tar, name, data):
  info = tarfile.TarInfo(name)
  info.size = len(data)
  info.mtime = 0
  tar.addfile(info, io.BytesIO(data))


def _train_file_specs(synsets, names, train_per_class, rng):
  """Lists (synset, label, file_name, mode, format) for every train image."""
  cmyk_name, png_name = _quirk_file_names()
  specs = []
  for synset in synsets:
    quirks = [q for q in (cmyk_name, png_name) if q.startswith(synset + '_')]
    # Random ids skip the quirk file's id, so no name appears twice.
    reserved = [int(q[:-len('.JPEG')].split('_')[1]) for q in quirks]
    pool = np.setdiff1d(np.arange(1, _MAX_TRAIN_ID), reserved)
    ids = rng.choice(pool, size=train_per_class, replace=False)
    file_names = [f'{synset}_{int(i)}.JPEG' for i in ids]
    for position, quirk in enumerate(quirks):
      file_names[position] = quirk
    for file_name in file_names:
      mode, image_format = 'RGB', 'JPEG'
      if file_name == cmyk_name:
        mode = 'CMYK'
      elif file_name == png_name:
        image_format = 'PNG'
      specs.append([synset, names.index(synset), file_name, mode, image_format])

  plain = [spec for spec in specs if spec[2] not in (cmyk_name, png_name)]
  if not plain:
    raise ValueError(
        f'num_classes={len(synsets)} with train_per_class={train_per_class} '
        'leaves no train image besides the CMYK and PNG ones for the '
        'greyscale image: raise num_classes or train_per_class.')
  plain[0][3] = 'L'
  return specs


def _write_train_tar(path, specs, state):
  """Writes the train tar (one inner tar per synset) and returns records."""
  records = []
  with tarfile.open(path, 'w') as outer:
    for synset in dict.fromkeys(spec[0] for spec in specs):
      inner_buffer = io.BytesIO()
      with tarfile.open(fileobj=inner_buffer, mode='w') as inner:
        for spec_synset, label, file_name, mode, image_format in specs:
          if spec_synset != synset:
            continue
          record, data = _make_image(file_name, label, synset, mode,
                                     image_format, state)
          _add_member(inner, file_name, data)
          records.append(record)
      _add_member(outer, f'{synset}.tar', inner_buffer.getvalue())
  return records


def _write_val_tar(path, names, num_val, state):
  """Writes the flat val tar and returns records in sorted-name order."""
  file_names = [f'ILSVRC2012_val_{i:08d}.JPEG' for i in range(1, num_val + 1)]
  synsets = validation_synsets(num_val)
  records = []
  for position, file_name in enumerate(file_names):
    mode = 'L' if position == 0 else 'RGB'
    records.append(_make_image(file_name, names.index(synsets[position]),
                               synsets[position], mode, 'JPEG', state))

  with tarfile.open(path, 'w') as tar:
    for position in state['rng'].permutation(num_val):
      record, data = records[position]
      _add_member(tar, record['file_name'], data)
  return [record for record, _ in records]


def _check_sizes(num_classes, train_per_class, num_val):
  if not 2 <= num_classes <= 1000:
    raise ValueError(
        f'num_classes must be in [2, 1000] because the CMYK and PNG files need '
        f'their own synsets, got {num_classes}.')
  if not 1 <= train_per_class < _MAX_TRAIN_ID - 1:
    raise ValueError(
        f'train_per_class must be in [1, {_MAX_TRAIN_ID - 2}], got '
        f'{train_per_class}.')
  if not 1 <= num_val <= _NUM_VALIDATION_IMAGES:
    raise ValueError(
        f'num_val must be in [1, {_NUM_VALIDATION_IMAGES}], got {num_val}.')


def build_manual_dir(manual_dir, num_classes=3, train_per_class=4, num_val=6,
                     seed=0):
  """Writes a miniature ILSVRC-2012 manual dir.

  Args:
    manual_dir: Directory to write the two tars into. Created if missing.
    num_classes: Number of synsets in the train tar, at least 2. They are
      the synsets of the CMYK and PNG files plus the lowest-numbered others.
    train_per_class: Number of images in each inner tar.
    num_val: Number of validation images, at most 50,000. The first one,
      `ILSVRC2012_val_00000001.JPEG`, is greyscale.
    seed: Seed for the crops, photos, sizes, file ids and val tar order. The
      same arguments and package versions write byte-identical tars.

  Returns:
    Dict with keys:
      'train_tar', 'val_tar': Paths of the two tars.
      'synsets': Chosen synset ids in label order.
      'labels': Dict from each chosen synset to its integer label.
      'train_files', 'val_files': One dict per image with 'file_name',
        'label' (the label the builder assigns), 'synset', 'width',
        'height', 'mode' ('RGB', 'L' or 'CMYK'), 'format' ('JPEG' or 'PNG')
        and 'sha256' of the bytes written.
      'greyscale_files', 'cmyk_files', 'png_files': File names of each quirk.
      'num_train', 'num_val': Number of images in each tar.
  """
  _check_sizes(num_classes, train_per_class, num_val)
  os.makedirs(manual_dir, exist_ok=True)
  names = label_names()
  synsets = _choose_synsets(names, num_classes)
  rng = np.random.default_rng(seed)
  state = {'photos': _load_photos(), 'rng': rng, 'sizes': []}

  train_path = os.path.join(manual_dir, TRAIN_TAR)
  val_path = os.path.join(manual_dir, VAL_TAR)
  specs = _train_file_specs(synsets, names, train_per_class, rng)
  train_files = _write_train_tar(train_path, specs, state)
  val_files = _write_val_tar(val_path, names, num_val, state)

  every_file = train_files + val_files
  greyscale = [f['file_name'] for f in every_file if f['mode'] == 'L']
  cmyk = [f['file_name'] for f in every_file if f['mode'] == 'CMYK']
  png = [f['file_name'] for f in every_file if f['format'] == 'PNG']
  logging.info('Wrote %d train and %d val images for synsets %s to %s',
               len(train_files), len(val_files), synsets, manual_dir)
  return {
      'train_tar': train_path,
      'val_tar': val_path,
      'synsets': synsets,
      'labels': {synset: names.index(synset) for synset in synsets},
      'train_files': train_files,
      'val_files': val_files,
      'greyscale_files': greyscale,
      'cmyk_files': cmyk,
      'png_files': png,
      'num_train': len(train_files),
      'num_val': len(val_files),
  }


def prepare_imagenet2012(data_dir, manual_dir):
  """Runs the real `imagenet2012` builder's `download_and_prepare`.

  Args:
    data_dir: TFDS data dir to write the prepared dataset into.
    manual_dir: Directory with both ILSVRC-2012 tars.

  Returns:
    The prepared `tfds` builder.

  Raises:
    FileNotFoundError: If a tar or the bundled validation labels are missing.
    RuntimeError: If the builder did not produce both splits.
  """
  # NOTE: tensorflow-datasets 4.9.10 needs `importlib_resources` to prepare a
  # dataset, but etils 1.15 no longer installs it. Without that package,
  # `download_and_prepare` raises ModuleNotFoundError.
  # The builder only logs a warning and skips a split whose tar is missing.
  for name in (TRAIN_TAR, VAL_TAR):
    path = os.path.join(manual_dir, name)
    if not os.path.isfile(path):
      raise FileNotFoundError(
          f'{path} not found: write it with build_manual_dir first.')
  labels_path = tfds.core.tfds_path(_VALIDATION_LABELS_FILE)
  if not labels_path.exists():
    raise FileNotFoundError(
        f'Bundled validation labels {labels_path} not found: reinstall '
        'tensorflow-datasets.')

  builder = tfds.builder('imagenet2012', data_dir=data_dir, try_gcs=False)
  config = tfds.download.DownloadConfig(manual_dir=manual_dir,
                                        try_download_gcs=False)
  start = time.perf_counter()
  builder.download_and_prepare(download_config=config)
  logging.info('Prepared imagenet2012 in %s in %.1f s', data_dir,
               time.perf_counter() - start)

  missing = {'train', 'validation'} - set(builder.info.splits.keys())
  if missing:
    raise RuntimeError(
        f'imagenet2012 prepared without splits {sorted(missing)} from '
        f'{manual_dir}.')
  return builder
