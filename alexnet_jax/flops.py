"""Multiply-adds of every layer, from the model's parameter shapes and map sizes.

A convolution's forward pass does one multiply-add per kernel weight per
output pixel, and a dense layer one per weight. At 227x227 input the paper's
network does 0.724 G multiply-adds forward per image (Krizhevsky et al., 2012,
section 3.5 gives the neuron counts, and conv1..fc8 sum to 724.4 M).
"""

import math

import jax

from alexnet_jax import models

# Multiply-adds per image of the paper's network (1000 classes, 227 input,
# width 1), forward pass, to the nearest million.
PAPER_FORWARD_MACS = 724_000_000
PAPER_TOLERANCE = 1_000_000

CONV_LAYERS = ('conv1', 'conv2', 'conv3', 'conv4', 'conv5')
DENSE_LAYERS = ('fc6', 'fc7', 'fc8')


def _output_pixels(geom) -> dict:
  _, pool1, pool2, _ = geom.spatial
  conv1 = geom.spatial[0]
  return {'conv1': conv1 ** 2, 'conv2': pool1 ** 2, 'conv3': pool2 ** 2,
          'conv4': pool2 ** 2, 'conv5': pool2 ** 2}


def forward_macs(model_config) -> dict:
  """Returns the forward multiply-adds per image of each conv and fc layer.

  The kernel shapes come from the model itself (`jax.eval_shape`, nothing is
  allocated). conv2, conv4 and conv5 read only their own column, which their
  per-column kernel shapes already express.
  """
  model = jax.eval_shape(lambda: models.create_model(model_config, 0))
  pixels = _output_pixels(model.geometry)
  macs = {}
  for name in CONV_LAYERS + DENSE_LAYERS:
    weights = math.prod(getattr(model, name).kernel.shape)
    macs[name] = weights * pixels.get(name, 1)
  return macs


def train_flops_per_image(model_config) -> int:
  """Returns the FLOPs of one image's forward and backward pass (2 per multiply-add).

  The backward pass computes each layer's weight gradient and, for every layer
  but conv1 (whose input is the image), its input gradient, each as many
  multiply-adds as the forward pass. Pooling, LRN, ReLU and the optimizer are
  not counted, as is usual for MFU.
  """
  macs = forward_macs(model_config)
  total = sum(3 * m for m in macs.values()) - macs['conv1']
  return 2 * total


def check_paper_macs(model_config) -> int:
  """Returns the forward multiply-adds of a paper-shaped config, raising if off.

  Raises:
    AssertionError: if a two-column, 227-input, width-1, 1000-class config
      does not give the paper's 0.724 G multiply-adds.
  """
  total = sum(forward_macs(model_config).values())
  paper_shape = (model_config.input_size == 227 and model_config.width == 1.0
                 and model_config.num_classes == 1000 and
                 model_config.get('columns', models.NUM_COLUMNS) ==
                 models.NUM_COLUMNS)
  if paper_shape and abs(total - PAPER_FORWARD_MACS) > PAPER_TOLERANCE:
    raise AssertionError(
        f'The model does {total} forward multiply-adds per image at 227 '
        f'input, but the paper\'s network does {PAPER_FORWARD_MACS}.')
  return total
