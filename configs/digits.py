r"""The embedded default: AlexNet on scikit-learn's handwritten digits.

The 1797 8x8 digits (10 classes, 20% held out) ship with scikit-learn, so this
runs anywhere with no download. They are upscaled and go through the same
pipeline, model and loop as ILSVRC-2012, with these deviations, each needed to
train on two CPU cores in minutes:

- input 67x67 (resized to 76 before cropping, the paper's 256/227 ratio), the
  smallest size at which pool5 is still 1x1;
- width 0.25 of the paper's layers;
- biases that the paper starts at 1 start at 0.1, and weights start with std
  0.03 instead of 0.01: with the paper's init the narrow network's loss stays
  at ln(10) for hundreds of steps on these digits;
- no flips, since a mirrored digit can be another digit.

    python main.py --config=configs/digits.py --workdir=/tmp/digits
"""

from configs import ilsvrc2012


def get_config():
  """Returns the digits configuration."""
  config = ilsvrc2012.get_config()
  config.dataset = 'digits'  # scikit-learn's digits, embedded in the package.
  config.model.num_classes = 10  # Digits 0-9.
  config.model.input_size = 67  # Smallest input with a 1x1 pool5.
  config.input.resize_size = 76  # 67 * 256 / 227, the paper's crop ratio.
  config.input.random_flip = False  # A mirrored digit can read as another digit.
  config.input.shuffle_buffer = 2048  # Holds the whole training split.
  config.model.width = 0.25  # A quarter of the paper's widths, for CPU speed.
  config.model.bias_one = 0.1  # The paper's 1 stalls training on these digits.
  config.model.weight_std = 0.03  # The paper's 0.01 stalls the narrow network.

  config.batch_size = 64  # Global batch size.
  config.num_epochs = 15  # Passes over the 1437 training digits.
  config.learning_rate = 0.01  # The paper's initial rate.
  config.schedule = 'constant'  # Short run: no decay.
  config.log_every_steps = 50  # Steps between training logs.
  config.eval_every_steps = 100  # Steps between evaluations.
  config.checkpoint_every_steps = 100  # Steps between checkpoints.
  config.eval_batch_size = 128  # Global evaluation batch size.
  config.mesh.model = 1  # The paper's 2 needs two devices; 1 runs anywhere.
  return config
