"""Tests of the PyTorch AlexNet reference used by the CPU benchmark."""

import math
import sys

import numpy as np
import pytest

torch = pytest.importorskip('torch')

from alexnet_jax import torch_reference  # pylint: disable=g-import-not-at-top


def _count_parameters(model):
  return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope='module')
def full_model_227():
  torch.manual_seed(0)
  return torch_reference.build_model(num_classes=1000, input_size=227)


def test_parameter_count_matches_paper(full_model_227):
  assert _count_parameters(full_model_227) == 60_965_224


def test_parameter_count_at_224_input():
  model = torch_reference.build_model(num_classes=1000, input_size=224)
  assert _count_parameters(model) == 60_965_224


def test_grouped_layers_match_columns(full_model_227):
  groups = {name: full_model_227.get_submodule(f'{name}.conv').groups
            for name in ('conv1', 'conv2', 'conv3', 'conv4', 'conv5')}
  assert groups == {'conv1': 1, 'conv2': 2, 'conv3': 1, 'conv4': 2,
                    'conv5': 2}


@pytest.mark.parametrize('input_size', [227, 224])
def test_output_and_conv1_shapes(full_model_227, input_size):
  model = (full_model_227 if input_size == 227 else
           torch_reference.build_model(input_size=input_size))
  model.eval()
  images = torch.randn(2, 3, input_size, input_size)
  with torch.no_grad():
    conv1_map = model.conv1(images)
    logits = model(images)
  assert tuple(conv1_map.shape) == (2, 96, 55, 55)
  assert tuple(logits.shape) == (2, 1000)
  assert torch.isfinite(logits).all()


def test_fc6_input_follows_input_size():
  model = torch_reference.build_model(num_classes=10, input_size=99,
                                      width=0.125)
  # 99 -> conv1 23 -> pool1 11 -> pool2 5 -> pool5 2, with 2*16 channels.
  assert model.fc6.linear.in_features == 32 * 2 * 2
  logits = model(torch.randn(2, 3, 99, 99))
  assert tuple(logits.shape) == (2, 10)


def test_too_small_input_raises():
  with pytest.raises(ValueError, match='input_size=66'):
    torch_reference.build_model(input_size=66, width=0.125)


def test_model_without_lrn_drops_layers():
  model = torch_reference.build_model(input_size=67, width=0.125, lrn=False)
  names = [name for name, _ in model.named_children()]
  assert names == [n for n in torch_reference.LAYER_NAMES
                   if not n.startswith('lrn')]


def test_lrn_matches_tensorflow():
  tf = pytest.importorskip('tensorflow')
  rng = np.random.default_rng(0)
  # Values up to 100 make alpha * sum(a^2) (up to 5) larger than k = 2.
  x_nhwc = rng.uniform(-100.0, 100.0, size=(2, 7, 9, 32)).astype(np.float32)

  expected = tf.nn.local_response_normalization(
      x_nhwc, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75).numpy()
  x_nchw = torch.from_numpy(x_nhwc.transpose(0, 3, 1, 2).copy())
  with torch.no_grad():
    actual = torch_reference.paper_lrn()(x_nchw).numpy().transpose(0, 2, 3, 1)

  np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=0)
  # The alpha term changes the result by far more than the tolerance.
  bias_only = x_nhwc / 2.0 ** 0.75
  assert np.max(np.abs(expected - bias_only) / np.abs(bias_only)) > 0.5


def test_torch_lrn_divides_alpha_by_size():
  tf = pytest.importorskip('tensorflow')
  rng = np.random.default_rng(1)
  x_nhwc = rng.uniform(-100.0, 100.0, size=(1, 5, 5, 16)).astype(np.float32)

  expected = tf.nn.local_response_normalization(
      x_nhwc, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75).numpy()
  unscaled = torch.nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)
  with torch.no_grad():
    actual = unscaled(torch.from_numpy(x_nhwc.transpose(0, 3, 1, 2).copy()))
  actual = actual.numpy().transpose(0, 2, 3, 1)

  assert not np.allclose(actual, expected, rtol=1e-3, atol=0)


def test_optimizer_is_paper_sgd():
  model = torch_reference.build_model(input_size=67, width=0.125)
  optimizer = torch_reference.build_optimizer(model)
  hyper = optimizer.param_groups[0]
  assert isinstance(optimizer, torch.optim.SGD)
  assert hyper['lr'] == 0.01
  assert hyper['momentum'] == 0.9
  assert hyper['weight_decay'] == 5e-4


def test_time_train_step_tiny():
  result = torch_reference.time_train_step(
      batch_size=2, input_size=67, num_classes=10, warmup=1, steps=2,
      width=0.125)
  assert math.isfinite(result['images_per_second'])
  assert result['images_per_second'] > 0
  assert result['step_time_s'] > 0
  assert len(result['step_times_s']) == 2
  assert result['threads'] == torch_reference.default_threads()


def test_time_train_step_restores_threads():
  before = torch.get_num_threads()
  result = torch_reference.time_train_step(
      batch_size=2, input_size=67, num_classes=10, warmup=0, steps=1,
      width=0.125, threads=1, lrn=False)
  assert result['threads'] == 1
  assert result['lrn'] is False
  assert torch.get_num_threads() == before


def test_layer_breakdown_tiny():
  rows = torch_reference.layer_breakdown(
      batch_size=2, input_size=67, num_classes=10, warmup=1, steps=2,
      width=0.125)
  assert [row['name'] for row in rows] == list(torch_reference.LAYER_NAMES)
  assert rows[0]['input_shape'] == (2, 3, 67, 67)
  assert rows[-1]['input_shape'] == (2, 512)
  for row in rows:
    assert row['forward_backward_ms'] > 0, row


def test_missing_torch_names_pinned_version(monkeypatch):
  # A None entry in sys.modules makes `import torch` raise ImportError.
  monkeypatch.setitem(sys.modules, 'torch', None)
  with pytest.raises(ImportError, match='pip install torch==2.13.0'):
    torch_reference.build_model()
