"""Tests the dataset_stats tool on images with a known pixel covariance."""

import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from alexnet_jax import input_pipeline
from alexnet_jax.tools import dataset_stats
from configs import imagefolder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEAN = np.array([120.0, 110.0, 100.0])
# Orthonormal eigenvectors (columns) and variances on the [0, 255] scale.
EIGVEC = np.linalg.qr(np.array([[1.0, 0.3, 0.1],
                                [1.0, -0.5, 0.4],
                                [1.0, 0.2, -0.6]]))[0]
STD = np.array([30.0, 12.0, 4.0])


@pytest.fixture(scope='module')
def synthetic_folder(tmp_path_factory):
  """Writes 256x256 PNGs whose pixels are i.i.d. N(MEAN, EIGVEC diag(STD^2) EIGVEC^T)."""
  root = tmp_path_factory.mktemp('synthetic')
  rng = np.random.default_rng(0)
  for split in ('train', 'val'):
    os.makedirs(root / split / 'only')
    for i in range(4):
      noise = rng.normal(size=(256 * 256, 3)) * STD
      pixels = MEAN + noise @ EIGVEC.T
      image = np.clip(np.round(pixels), 0, 255).astype(np.uint8)
      Image.fromarray(image.reshape(256, 256, 3)).save(
          root / split / 'only' / f'{i}.png')
  return str(root)


def config_for(root):
  config = imagefolder.get_config()
  config.data_dir = root
  config.input.threads = 2
  return config


def test_recovers_known_covariance(synthetic_folder):
  dataset, count = dataset_stats.sample_dataset(config_for(synthetic_folder),
                                                -1, seed=0)
  stats = dataset_stats.pixel_stats(dataset.as_numpy_iterator(), count)
  eigvec = np.array(stats['pca_eigvec'])
  for k in range(3):
    cosine = abs(eigvec[:, k] @ EIGVEC[:, k])
    assert cosine > 0.999, f'component {k}: |cos| = {cosine}'
  np.testing.assert_allclose(stats['pca_eigval'], (STD / 255.0) ** 2,
                             rtol=0.03)
  np.testing.assert_allclose(stats['mean_rgb'], MEAN, atol=0.5)


def test_command_writes_stats_file(synthetic_folder, tmp_path):
  output = tmp_path / 'stats.json'
  subprocess.run(
      [sys.executable, '-m', 'alexnet_jax.tools.dataset_stats',
       '--config=configs/imagefolder.py',
       f'--config.data_dir={synthetic_folder}', f'--output={output}',
       '--num_images=2'], cwd=REPO, check=True, capture_output=True)
  written = json.loads(output.read_text())
  assert written['num_images'] == 2
  config = config_for(synthetic_folder)
  config.input.stats_file = str(output)
  stats = input_pipeline.input_stats(config.input)
  assert stats.mean_rgb == tuple(written['mean_rgb'])
  assert np.array(stats.pca_eigvec).shape == (3, 3)


def test_missing_stats_file_named(tmp_path):
  config = config_for(str(tmp_path))
  config.input.stats_file = str(tmp_path / 'none.json')
  with pytest.raises(FileNotFoundError, match='none.json'):
    input_pipeline.input_stats(config.input)
