r"""Ablation: the paper's one-column comparison network.

Krizhevsky et al. (2012) compare the two-column network with a one-column
network that has half as many kernels in each convolutional layer, and report
that the two columns lower top-1 / top-5 error by 1.7% / 1.2%. This config is
one of the paper's columns on its own: conv1..conv5 with 48-128-192-192-128
kernels, fc6 and fc7 with 2048 units each and a 1000-way fc8, where conv3, fc6,
fc7 and fc8 read that one column. At 1000 classes and 227 input it has
16,630,440 parameters: 945,856 in the convolutions, then fc6 6*6*128*2048 +
2048, fc7 2048*2048 + 2048 and fc8 2048*1000 + 1000.

NOTE: the paper states the halving for the convolutional layers only. The fc
widths of its comparison network (2048 here) are this config's reading, not a
number the paper gives.

    python main.py --config=configs/ablations/one_column.py \
        --workdir=/tmp/one_column --config.data_dir=/data/tfds
"""

from configs import ilsvrc2012


def get_config():
  """Returns the ILSVRC-2012 configuration of the one-column network."""
  config = ilsvrc2012.get_config()
  config.model.columns = 1  # A single column with the per-column widths.
  config.mesh.model = 1  # One column lives on one device of each replica.
  return config
