"""Tests the miniature ILSVRC-2012 manual dir against the real TFDS builder."""

import hashlib
import io
import tarfile

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.datasets.imagenet2012 import (
    imagenet2012_dataset_builder as imagenet_builder,
)

import ilsvrc_fixture

NUM_CLASSES = 3
TRAIN_PER_CLASS = 4
NUM_VAL = 6


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  """Returns (report, builder) for one manual dir prepared once per module."""
  root = tmp_path_factory.mktemp('ilsvrc')
  report = ilsvrc_fixture.build_manual_dir(
      root / 'manual', num_classes=NUM_CLASSES,
      train_per_class=TRAIN_PER_CLASS, num_val=NUM_VAL, seed=0)
  builder = ilsvrc_fixture.prepare_imagenet2012(root / 'data', root / 'manual')
  return report, builder


def _read_split(builder, split, skip_decoding=False):
  """Returns {file_name: (image, label)} for every example of `split`."""
  decoders = {'image': tfds.decode.SkipDecoding()} if skip_decoding else None
  dataset = builder.as_dataset(split=split, shuffle_files=False,
                               decoders=decoders)
  examples = {}
  for example in tfds.as_numpy(dataset):
    file_name = example['file_name'].decode()
    assert file_name not in examples, f'duplicate example {file_name}'
    examples[file_name] = (example['image'], int(example['label']))
  return examples


def _read_written_images(report):
  """Returns {file_name: bytes} of every image in both tars."""
  images = {}
  with tarfile.open(report['train_tar']) as outer:
    for inner_name in outer.getnames():
      with tarfile.open(fileobj=outer.extractfile(inner_name)) as inner:
        for member in inner.getnames():
          images[member] = inner.extractfile(member).read()
  with tarfile.open(report['val_tar']) as val:
    for member in val.getnames():
      images[member] = val.extractfile(member).read()
  return images


def _records(report):
  """Returns {file_name: record} over both splits of the report."""
  every_file = report['train_files'] + report['val_files']
  return {record['file_name']: record for record in every_file}


def test_manual_dir_train_layout(tmp_path):
  report = ilsvrc_fixture.build_manual_dir(tmp_path)
  synsets = report['synsets']
  cmyk_synset = imagenet_builder.CMYK_IMAGES[0].split('_')[0]
  png_synset = imagenet_builder.PNG_IMAGES[0].split('_')[0]

  assert len(synsets) == NUM_CLASSES
  assert cmyk_synset in synsets
  assert png_synset in synsets
  assert report['num_train'] == NUM_CLASSES * TRAIN_PER_CLASS
  with tarfile.open(report['train_tar']) as outer:
    inner_names = outer.getnames()
    assert inner_names == [f'{synset}.tar' for synset in synsets]
    for inner_name in inner_names:
      with tarfile.open(fileobj=outer.extractfile(inner_name)) as inner:
        members = inner.getnames()
      assert len(members) == TRAIN_PER_CLASS
      for member in members:
        synset, image_id = member[:-len('.JPEG')].split('_')
        assert synset == inner_name[:-len('.tar')]
        assert image_id.isdigit()
        assert member.endswith('.JPEG')


def test_manual_dir_val_layout(tmp_path):
  report = ilsvrc_fixture.build_manual_dir(tmp_path)
  expected = [f'ILSVRC2012_val_{i:08d}.JPEG' for i in range(1, NUM_VAL + 1)]

  assert report['num_val'] == NUM_VAL
  with tarfile.open(report['val_tar']) as val:
    names = val.getnames()
  assert sorted(names) == expected
  assert [r['file_name'] for r in report['val_files']] == expected


def test_manual_dir_image_quirks(tmp_path):
  report = ilsvrc_fixture.build_manual_dir(tmp_path)
  written = _read_written_images(report)
  records = _records(report)

  assert report['cmyk_files'] == [imagenet_builder.CMYK_IMAGES[0]]
  assert report['png_files'] == [imagenet_builder.PNG_IMAGES[0]]
  assert len(report['greyscale_files']) == 2
  assert set(written) == set(records)
  for file_name, data in written.items():
    record = records[file_name]
    image = Image.open(io.BytesIO(data))
    assert hashlib.sha256(data).hexdigest() == record['sha256'], file_name
    assert image.format == record['format'], file_name
    assert image.mode == record['mode'], file_name
    assert image.size == (record['width'], record['height']), file_name
  sides = [min(r['width'], r['height']) for r in records.values()]
  assert min(sides) < 227
  assert max(sides) >= 375


def test_manual_dir_same_seed_same_bytes(tmp_path):
  first = ilsvrc_fixture.build_manual_dir(tmp_path / 'a', seed=7)
  second = ilsvrc_fixture.build_manual_dir(tmp_path / 'b', seed=7)
  other = ilsvrc_fixture.build_manual_dir(tmp_path / 'c', seed=8)

  for key in ('train_tar', 'val_tar'):
    with open(first[key], 'rb') as f, open(second[key], 'rb') as g:
      assert f.read() == g.read(), key
  assert first['train_files'] != other['train_files']


@pytest.mark.parametrize('kwargs', [
    {'num_classes': 1},
    {'num_classes': 1001},
    {'train_per_class': 0},
    {'num_val': 0},
    {'num_val': 50_001},
    {'num_classes': 2, 'train_per_class': 1},
])
def test_manual_dir_invalid_sizes(tmp_path, kwargs):
  with pytest.raises(ValueError):
    ilsvrc_fixture.build_manual_dir(tmp_path, **kwargs)


def test_prepare_missing_tar(tmp_path):
  ilsvrc_fixture.build_manual_dir(tmp_path / 'manual')
  (tmp_path / 'manual' / 'ILSVRC2012_img_val.tar').unlink()

  with pytest.raises(FileNotFoundError, match='ILSVRC2012_img_val.tar'):
    ilsvrc_fixture.prepare_imagenet2012(tmp_path / 'data', tmp_path / 'manual')


def test_prepared_split_counts(prepared):
  report, builder = prepared

  assert builder.info.splits['train'].num_examples == report['num_train']
  assert builder.info.splits['validation'].num_examples == report['num_val']
  assert len(_read_split(builder, 'train')) == report['num_train']
  assert len(_read_split(builder, 'validation')) == report['num_val']


@pytest.mark.parametrize('split', ['train', 'validation'])
def test_prepared_images_decode_rgb(prepared, split):
  report, builder = prepared
  records = _records(report)

  for file_name, (image, _) in _read_split(builder, split).items():
    record = records[file_name]
    assert image.dtype == np.uint8, file_name
    assert image.shape == (record['height'], record['width'], 3), file_name
    if record['mode'] == 'L':
      assert np.array_equal(image[..., 0], image[..., 1]), file_name
      assert np.array_equal(image[..., 0], image[..., 2]), file_name
    else:
      assert not np.array_equal(image[..., 0], image[..., 1]), file_name


def test_prepared_train_labels(prepared):
  report, builder = prepared
  names = builder.info.features['label'].names
  records = _records(report)

  examples = _read_split(builder, 'train')
  assert set(examples) == {r['file_name'] for r in report['train_files']}
  for file_name, (_, label) in examples.items():
    inner_tar_synset = file_name.split('_')[0]
    assert label == names.index(inner_tar_synset), file_name
    assert label == records[file_name]['label'], file_name


def test_prepared_val_labels(prepared):
  report, builder = prepared
  expected = {r['file_name']: r['label'] for r in report['val_files']}

  labels = {name: label
            for name, (_, label) in _read_split(builder, 'validation').items()}
  assert labels == expected


def test_prepared_quirks_reencoded(prepared):
  report, builder = prepared
  written = _read_written_images(report)
  fixed = set(report['cmyk_files'] + report['png_files'])

  for split in ('train', 'validation'):
    for file_name, (data, _) in _read_split(builder, split, True).items():
      stored = Image.open(io.BytesIO(data))
      if file_name in fixed:
        assert stored.format == 'JPEG', file_name
        assert stored.mode == 'RGB', file_name
      else:
        assert data == written[file_name], file_name


def test_prepared_cmyk_colours(prepared):
  report, builder = prepared
  file_name = report['cmyk_files'][0]
  written = _read_written_images(report)[file_name]
  reference = np.asarray(Image.open(io.BytesIO(written)).convert('RGB'))

  image, _ = _read_split(builder, 'train')[file_name]
  error = np.abs(image.astype(np.int32) - reference.astype(np.int32)).mean()
  assert error < 8.0
