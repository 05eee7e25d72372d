r"""Ablation: training without the paper's PCA lighting augmentation.

Krizhevsky et al. (2012) report that PCA lighting lowers top-1 error by over
1%.

    python main.py --config=configs/ablations/no_pca_lighting.py \
        --workdir=/tmp/no_pca_lighting --config.data_dir=/data/tfds
"""

from configs import ilsvrc2012


def get_config():
  """Returns the ILSVRC-2012 configuration without PCA lighting."""
  config = ilsvrc2012.get_config()
  config.input.pca_lighting = False  # Crops and flips only.
  return config
