r"""Ablation: training without dropout on fc6 and fc7.

Krizhevsky et al. (2012) report that without dropout the network overfits
substantially, and that dropout roughly doubles the number of iterations
needed to converge.

    python main.py --config=configs/ablations/no_dropout.py \
        --workdir=/tmp/no_dropout --config.data_dir=/data/tfds
"""

from configs import ilsvrc2012


def get_config():
  """Returns the ILSVRC-2012 configuration without dropout."""
  config = ilsvrc2012.get_config()
  config.model.dropout_rate = 0.0  # Keep every fc6 and fc7 unit in training.
  return config
