"""Trains one epoch on an image folder with broken and unusual files."""

import logging
import os

import jax
import pytest

from alexnet_jax import loop
from alexnet_jax import sharding
from configs import imagefolder
import folder_fixture


@pytest.fixture(scope='module')
def bad_folder(tmp_path_factory):
  root = folder_fixture.write_image_folder(
      tmp_path_factory.mktemp('bad_folder'), num_classes=2,
      train_per_class=4, val_per_class=2)
  paths = folder_fixture.write_bad_files(os.path.join(root, 'train', 'class0'))
  return root, paths


def tiny_config(root, on_bad_image):
  config = imagefolder.get_config()
  config.data_dir = root
  config.input.on_bad_image = on_bad_image
  config.input.threads = 2
  config.model.num_classes = 2
  config.model.width = 0.125
  config.model.input_size = 67
  config.input.resize_size = 76
  config.batch_size = 4
  config.eval_batch_size = 4
  config.num_epochs = 1
  config.mesh.data, config.mesh.model = 1, 1
  return config


def test_skip_trains_one_epoch(bad_folder, tmp_path, caplog):
  root, paths = bad_folder
  caplog.set_level(logging.INFO, logger='absl')
  config = tiny_config(root, 'skip')
  mesh = sharding.create_mesh(config.mesh, devices=jax.devices()[:1])
  # 15 files, 3 broken: the 12 good ones fill the epoch's 3 batches of 4.
  results = loop.train_and_evaluate(config, str(tmp_path), mesh)
  assert results['step'] == 3
  skipped = [r.getMessage() for r in caplog.records
             if r.getMessage().startswith('Skipping undecodable image')]
  epoch0 = sorted(m.split()[3] for m in skipped if m.endswith('(epoch 0).'))
  assert epoch0 == sorted(paths[name] for name in folder_fixture.BROKEN)
  assert any('Epoch 0 of the input stream skipped 3 undecodable images' in
             r.getMessage() for r in caplog.records)


def test_raise_names_first_broken_file(bad_folder, tmp_path):
  root, paths = bad_folder
  config = tiny_config(root, 'raise')
  mesh = sharding.create_mesh(config.mesh, devices=jax.devices()[:1])
  with pytest.raises(Exception) as info:
    loop.train_and_evaluate(config, str(tmp_path), mesh)
  named = [name for name in folder_fixture.BROKEN
           if paths[name] in str(info.value)]
  assert len(named) == 1
