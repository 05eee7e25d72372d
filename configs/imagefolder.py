r"""AlexNet on any folder of images sorted into one sub-folder per class.

The layout, one sub-folder per class in each split:

    <data_dir>/train/<class>/<image>   e.g. train/n01440764/n01440764_10026.JPEG
    <data_dir>/val/<class>/<image>     classes must also exist in train/

Labels number the class names of train/ in sorted order. Files ending in .jpg,
.jpeg, .png, .bmp or .gif (any case) are read, whatever their real format.
Greyscale, CMYK and PNG files become 3-channel RGB. A file that cannot be read
or decoded is skipped in training with a warning naming it, and each epoch
logs how many were skipped. `--config.input.on_bad_image=raise` stops at the
first one instead.

Everything else is the paper's ILSVRC-2012 setup. Set num_classes to the
number of class folders, and point input.stats_file at the output of
`alexnet_jax.tools.dataset_stats` to use this data set's own mean and PCA
lighting in place of ImageNet's:

    python -m alexnet_jax.tools.dataset_stats --config=configs/imagefolder.py \
        --config.data_dir=/data/flowers --output=/data/flowers/stats.json
    python main.py --config=configs/imagefolder.py --workdir=/tmp/flowers \
        --config.data_dir=/data/flowers --config.model.num_classes=5 \
        --config.input.stats_file=/data/flowers/stats.json
"""

from configs import ilsvrc2012


def get_config():
  """Returns the image-folder configuration."""
  config = ilsvrc2012.get_config()
  config.dataset = 'imagefolder'  # Class sub-folders under data_dir/train and data_dir/val.
  config.data_dir = ''  # Folder holding train/ and val/; required.
  config.train_split = 'train'  # Sub-folder of data_dir to train on.
  config.eval_split = 'val'  # Sub-folder of data_dir to evaluate on.
  config.input.shuffle_buffer = 16_384  # Examples in the shuffle buffer; files are already in a fixed mixed order.
  return config
