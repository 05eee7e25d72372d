"""PyTorch reference of AlexNet for timing against the JAX model on the CPU.

The network is the two-column AlexNet of Krizhevsky, Sutskever and Hinton,
"ImageNet Classification with Deep Convolutional Neural Networks" (NIPS 2012),
as a single device runs it in Caffe's formulation: the layers that read only
their own column are grouped convolutions with groups=2.

PyTorch is an optional benchmark dependency. It is imported inside the
functions, and a missing install raises an ImportError that names the pinned
version to install.

Run `python -m alexnet_jax.torch_reference` to print the train-step
throughput and the per-layer forward+backward times.
"""

import collections
import contextlib
import math
import os
import statistics
import time

from absl import flags
from absl import logging

FLAGS = flags.FLAGS

TORCH_REQUIREMENT = 'torch==2.13.0'

# Local response normalization constants of the paper:
# b = a / (k + alpha * sum over n adjacent channels of a^2) ** beta.
LRN_SIZE = 5
LRN_ALPHA = 1e-4
LRN_BETA = 0.75
LRN_K = 2.0

# Per-column widths of the paper's two columns, before width scaling.
COLUMN_CONV_CHANNELS = (48, 128, 192, 192, 128)
COLUMN_FC_UNITS = 2048

# At 224x224 input, conv1 (11x11, stride 4) needs 3 pixels of padding to give
# the 55x55 map that the paper reports: 1 before and 2 after, on each axis.
PADDED_INPUT_SIZE = 224
CONV1_PADDING_224 = (1, 2, 1, 2)  # ZeroPad2d order: left, right, top, bottom.

# Rows of `layer_breakdown`, in forward order.
LAYER_NAMES = ('conv1', 'lrn1', 'pool1', 'conv2', 'lrn2', 'pool2', 'conv3',
               'conv4', 'conv5', 'pool5', 'fc6', 'fc7', 'fc8')


def import_torch():
  """Import PyTorch, or raise an ImportError that names the install command.

  Returns:
    The `torch` module.
  """
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as err:
    raise ImportError(
        'PyTorch is not installed, and the PyTorch reference benchmark needs '
        f'it. Install the tested version with: pip install {TORCH_REQUIREMENT}'
    ) from err
  return torch


def paper_lrn():
  """Build the paper's LRN layer as `torch.nn.LocalResponseNorm`.

  PyTorch divides alpha by the window size n before scaling the sum of
  squares, so alpha=n*1e-4 gives the paper's 1e-4 per squared activation.
  In torch 2.13 the layer is composed of pad, avg_pool3d and elementwise
  ops with no fused kernel, so on the CPU it costs about as much as a conv.

  Returns:
    An `nn.LocalResponseNorm` equal to the paper's normalization.
  """
  nn = import_torch().nn
  return nn.LocalResponseNorm(
      LRN_SIZE, alpha=LRN_ALPHA * LRN_SIZE, beta=LRN_BETA, k=LRN_K)


def _scaled_width(channels, width):
  """Scale a per-column width and return the total over both columns."""
  return 2 * max(1, round(channels * width))


def _conv_block(in_channels, out_channels, kernel_size, stride, padding,
                groups, pad=None):
  """Build a conv+ReLU block, with an explicit zero pad in front if given."""
  nn = import_torch().nn
  layers = collections.OrderedDict()
  if pad is not None:
    layers['pad'] = nn.ZeroPad2d(pad)
  layers['conv'] = nn.Conv2d(in_channels, out_channels, kernel_size,
                             stride=stride, padding=padding, groups=groups)
  layers['relu'] = nn.ReLU(inplace=True)
  return nn.Sequential(layers)


def _fc_block(in_features, out_features, flatten=False):
  """Build a linear+ReLU+dropout(0.5) block, flattening its input if asked."""
  nn = import_torch().nn
  layers = collections.OrderedDict()
  if flatten:
    layers['flatten'] = nn.Flatten()
  layers['linear'] = nn.Linear(in_features, out_features)
  layers['relu'] = nn.ReLU(inplace=True)
  layers['dropout'] = nn.Dropout(0.5)
  return nn.Sequential(layers)


def _feature_layers(width, input_size, lrn):
  """Build conv1 through pool5 as an ordered dict of named blocks."""
  nn = import_torch().nn
  c1, c2, c3, c4, c5 = (_scaled_width(c, width) for c in COLUMN_CONV_CHANNELS)
  pad = CONV1_PADDING_224 if input_size == PADDED_INPUT_SIZE else None

  layers = collections.OrderedDict()
  layers['conv1'] = _conv_block(3, c1, 11, 4, 0, groups=1, pad=pad)
  if lrn:
    layers['lrn1'] = paper_lrn()
  layers['pool1'] = nn.MaxPool2d(3, 2)
  layers['conv2'] = _conv_block(c1, c2, 5, 1, 2, groups=2)
  if lrn:
    layers['lrn2'] = paper_lrn()
  layers['pool2'] = nn.MaxPool2d(3, 2)
  # conv3 reads both columns, so it is the one ungrouped inner convolution.
  layers['conv3'] = _conv_block(c2, c3, 3, 1, 1, groups=1)
  layers['conv4'] = _conv_block(c3, c4, 3, 1, 1, groups=2)
  layers['conv5'] = _conv_block(c4, c5, 3, 1, 1, groups=2)
  layers['pool5'] = nn.MaxPool2d(3, 2)
  return layers


def _init_paper_weights(model):
  """Initialize weights as the paper does: N(0, 0.01), biases 1 or 0.

  Biases are 1 in conv2, conv4, conv5, fc6 and fc7, and 0 elsewhere.
  """
  torch = import_torch()
  unit_bias_layers = ('conv2', 'conv4', 'conv5', 'fc6', 'fc7')
  with torch.no_grad():
    for name, module in model.named_modules():
      if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
        module.weight.normal_(0.0, 0.01)
        unit_bias = name.split('.')[0] in unit_bias_layers
        module.bias.fill_(1.0 if unit_bias else 0.0)


def build_model(num_classes=1000, input_size=227, width=1.0, lrn=True):
  """Build the two-column AlexNet as one `nn.Sequential` of named blocks.

  Args:
    num_classes: Number of logits of fc8.
    input_size: Height and width of the square RGB input. At 224 conv1 is
      zero-padded (1 before, 2 after) so that its output is 55x55, as at 227.
    width: Factor on every per-column width (48/128/192/192/128 channels and
      2048 units); each column keeps at least one channel.
    lrn: Whether to include the LRN layers after conv1 and conv2.

  Returns:
    An `nn.Sequential` whose children are named as `LAYER_NAMES` (without
    lrn1/lrn2 when `lrn` is false). At 1000 classes, 227 input and width 1
    it has 60,965,224 parameters.

  Raises:
    ValueError: If the input is too small to leave a 1x1 map after pool5.
  """
  torch = import_torch()
  features = _feature_layers(width, input_size, lrn)
  with torch.no_grad():
    probe = torch.zeros(1, 3, input_size, input_size)
    try:
      feature_shape = torch.nn.Sequential(features)(probe).shape
    except RuntimeError as err:
      raise ValueError(
          f'input_size={input_size} is too small for AlexNet: conv1 to pool5 '
          'need at least 67 pixels.') from err

  fc_units = _scaled_width(COLUMN_FC_UNITS, width)
  layers = features
  layers['fc6'] = _fc_block(math.prod(feature_shape[1:]), fc_units,
                            flatten=True)
  layers['fc7'] = _fc_block(fc_units, fc_units)
  layers['fc8'] = torch.nn.Linear(fc_units, num_classes)
  model = torch.nn.Sequential(layers)
  _init_paper_weights(model)
  return model


def build_optimizer(model):
  """Build the paper's SGD: lr 0.01, momentum 0.9, coupled weight decay 5e-4.

  Args:
    model: The module whose parameters are trained.

  Returns:
    A `torch.optim.SGD` over the model's parameters.
  """
  torch = import_torch()
  return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9,
                         weight_decay=5e-4)


def default_threads():
  """Return the number of CPU cores this process may run on."""
  if hasattr(os, 'sched_getaffinity'):
    return len(os.sched_getaffinity(0))
  return os.cpu_count() or 1


@contextlib.contextmanager
def _torch_threads(threads):
  """Set torch's intra-op thread count inside the block and restore it after."""
  torch = import_torch()
  previous = torch.get_num_threads()
  torch.set_num_threads(threads)
  try:
    yield
  finally:
    torch.set_num_threads(previous)


def _time_calls(run, warmup, steps):
  """Call `run` warmup+steps times and return the timed durations in seconds."""
  if steps < 1:
    raise ValueError(f'steps must be at least 1, got {steps}.')
  for _ in range(warmup):
    run()
  durations = []
  for _ in range(steps):
    start = time.perf_counter()
    run()
    durations.append(time.perf_counter() - start)
  return durations


def time_train_step(batch_size=32, input_size=227, num_classes=1000,
                    warmup=2, steps=5, threads=None, lrn=True, width=1.0):
  """Time the full SGD train step of the PyTorch AlexNet on random inputs.

  Each step runs zero_grad, forward, cross-entropy loss, backward and
  optimizer.step, in float32 on the CPU.

  Args:
    batch_size: Images per step.
    input_size: Height and width of the square input.
    num_classes: Number of classes (logits and random labels).
    warmup: Untimed steps before the timed ones.
    steps: Timed steps.
    threads: torch intra-op threads; None uses every core this process may
      run on. The previous setting is restored afterwards.
    lrn: Whether the model has its LRN layers.
    width: Factor on every per-column width, as in `build_model`.

  Returns:
    A dict with images_per_second and step_time_s (from the median step),
    step_times_s (every timed step), threads, batch_size, input_size,
    num_classes, width, lrn and torch_version.
  """
  torch = import_torch()
  threads = threads or default_threads()
  generator = torch.Generator().manual_seed(0)
  torch.manual_seed(0)
  model = build_model(num_classes, input_size, width, lrn=lrn)
  model.train()
  optimizer = build_optimizer(model)
  loss_fn = torch.nn.CrossEntropyLoss()
  images = torch.randn(batch_size, 3, input_size, input_size,
                       generator=generator)
  labels = torch.randint(0, num_classes, (batch_size,), generator=generator)

  def train_step():
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model(images), labels)
    loss.backward()
    optimizer.step()

  with _torch_threads(threads):
    durations = _time_calls(train_step, warmup, steps)
  step_time = statistics.median(durations)
  logging.info('torch train step: batch %d, input %d, lrn %s, %d threads: '
               '%.3f s median over %d steps', batch_size, input_size, lrn,
               threads, step_time, steps)
  return {
      'images_per_second': batch_size / step_time,
      'step_time_s': step_time,
      'step_times_s': durations,
      'threads': threads,
      'batch_size': batch_size,
      'input_size': input_size,
      'num_classes': num_classes,
      'width': width,
      'lrn': lrn,
      'torch_version': torch.__version__,
  }


def _block_input_shapes(model, batch_size, input_size):
  """Run one forward pass and return each child's input shape by name."""
  torch = import_torch()
  shapes = {}
  x = torch.zeros(batch_size, 3, input_size, input_size)
  with torch.no_grad():
    for name, block in model.named_children():
      shapes[name] = tuple(x.shape)
      x = block(x)
  return shapes


def layer_breakdown(batch_size=32, input_size=227, num_classes=1000,
                    warmup=2, steps=5, threads=None, lrn=True, width=1.0):
  """Time forward+backward of each AlexNet layer alone, in training mode.

  Each layer gets a random input of the shape it receives in the full network,
  runs forward, then backward of the sum of its outputs. The input needs a
  gradient for every layer but conv1, as in the train step. A conv or fc row
  includes its ReLU, and fc6 and fc7 include their dropout.

  Args:
    batch_size: Images per step.
    input_size: Height and width of the square input.
    num_classes: Number of logits of fc8.
    warmup: Untimed runs per layer.
    steps: Timed runs per layer.
    threads: torch intra-op threads; None uses every core this process may
      run on. The previous setting is restored afterwards.
    lrn: Whether to include lrn1 and lrn2.
    width: Factor on every per-column width, as in `build_model`.

  Returns:
    One dict per layer in forward order, with name, input_shape and
    forward_backward_ms (median of the timed runs).
  """
  torch = import_torch()
  threads = threads or default_threads()
  torch.manual_seed(0)
  model = build_model(num_classes, input_size, width, lrn=lrn)
  model.train()
  shapes = _block_input_shapes(model, batch_size, input_size)
  generator = torch.Generator().manual_seed(0)

  rows = []
  with _torch_threads(threads):
    for name, block in model.named_children():
      x = torch.randn(shapes[name], generator=generator)
      x.requires_grad_(name != 'conv1')

      def forward_backward(block=block, x=x):
        block.zero_grad(set_to_none=True)
        x.grad = None
        block(x).sum().backward()

      durations = _time_calls(forward_backward, warmup, steps)
      rows.append({
          'name': name,
          'input_shape': shapes[name],
          'forward_backward_ms': 1e3 * statistics.median(durations),
      })
  return rows


def _format_report(train_rows, breakdown):
  """Format the train-step results and the layer breakdown as text tables."""
  first = train_rows[0]
  lines = [f'PyTorch {first["torch_version"]} AlexNet train step '
           f'(batch {first["batch_size"]}, input {first["input_size"]}, '
           f'{first["threads"]} threads)',
           f'{"lrn":<6}{"step s":>10}{"images/s":>12}']
  for row in train_rows:
    lines.append(f'{str(row["lrn"]):<6}{row["step_time_s"]:>10.3f}'
                 f'{row["images_per_second"]:>12.2f}')
  lines += ['', 'Per-layer forward+backward (median ms)',
            f'{"layer":<8}{"input shape":<22}{"ms":>10}']
  for row in breakdown:
    shape = 'x'.join(str(d) for d in row['input_shape'])
    lines.append(f'{row["name"]:<8}{shape:<22}'
                 f'{row["forward_backward_ms"]:>10.2f}')
  total = sum(row['forward_backward_ms'] for row in breakdown)
  lines.append(f'{"total":<30}{total:>10.2f}')
  return '\n'.join(lines)


def _define_flags():
  """Define the command-line flags. Only the command calls this.

  The flags are not defined at import, so that a program that imports this
  module can define flags of the same names.
  """
  flags.DEFINE_integer('batch_size', 32, 'Images per train step.')
  flags.DEFINE_integer('input_size', 227, 'Height and width of the input.')
  flags.DEFINE_integer('num_classes', 1000, 'Number of classes.')
  flags.DEFINE_float('width', 1.0, 'Factor on every per-column layer width.')
  flags.DEFINE_integer('warmup', 2, 'Untimed runs before timing.')
  flags.DEFINE_integer('steps', 5, 'Timed runs; the median is reported.')
  flags.DEFINE_integer('threads', None,
                       'torch intra-op threads (default: every usable core).')
  flags.DEFINE_bool('compare_no_lrn', True,
                    'Also time the train step without the LRN layers.')


def main(argv):
  """Time the train step (with and without LRN) and print the tables."""
  del argv
  common = dict(batch_size=FLAGS.batch_size, input_size=FLAGS.input_size,
                num_classes=FLAGS.num_classes, warmup=FLAGS.warmup,
                steps=FLAGS.steps, threads=FLAGS.threads, width=FLAGS.width)
  lrn_options = (True, False) if FLAGS.compare_no_lrn else (True,)
  train_rows = [time_train_step(lrn=lrn, **common) for lrn in lrn_options]
  breakdown = layer_breakdown(**common)
  print(_format_report(train_rows, breakdown))


if __name__ == '__main__':
  from absl import app  # pylint: disable=g-import-not-at-top
  _define_flags()
  app.run(main)
