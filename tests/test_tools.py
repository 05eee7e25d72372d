"""Tests of the figure tools and the report on a trained digits run."""

import os

import numpy as np
from PIL import Image

from alexnet_jax.tools import curves
from alexnet_jax.tools import filters
from alexnet_jax.tools import neighbors
from alexnet_jax.tools import report


def png_pixels(path):
  with Image.open(path) as image:
    return np.asarray(image.convert('RGB'), np.float32)


def test_filters_two_blocks(digits_run):
  _, workdir = digits_run
  result = filters.render(workdir)
  assert result['blocks'] == 2


def test_filters_png_not_blank(digits_run):
  _, workdir = digits_run
  pixels = png_pixels(filters.render(workdir)['path'])
  assert pixels.shape[0] >= 300
  assert pixels.shape[1] >= 600
  assert pixels.std() > 10


def test_neighbors_share_class(digits_run):
  _, workdir = digits_run
  result = neighbors.render(workdir, queries=8, train_images=-1)
  assert min(result['agreement']) >= 0.7, result


def test_neighbors_png_not_blank(digits_run):
  _, workdir = digits_run
  path = os.path.join(workdir, 'neighbors.png')
  if not os.path.exists(path):
    neighbors.render(workdir, queries=8, train_images=-1)
  pixels = png_pixels(path)
  assert pixels.shape[0] >= 400
  assert pixels.shape[1] >= 400
  assert pixels.std() > 10


def test_curves_png_not_blank(digits_run):
  _, workdir = digits_run
  pixels = png_pixels(curves.render(workdir))
  assert pixels.shape[0] >= 300
  assert pixels.shape[1] >= 1000
  assert pixels.std() > 10


def test_report_links_figures(digits_run):
  _, workdir = digits_run
  with open(report.build(workdir), encoding='utf-8') as f:
    text = f.read()
  assert '](curves.png)' in text
  assert '](filters.png)' in text
  assert 'eval_top1_error' not in text.split('## Config')[0]
