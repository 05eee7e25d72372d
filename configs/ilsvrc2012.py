r"""The paper's run: AlexNet on ILSVRC-2012 through TFDS `imagenet2012`.

Values follow Krizhevsky, Sutskever and Hinton (2012), "ImageNet
Classification with Deep Convolutional Neural Networks". Where common practice
differs, the field keeps the paper's value and its comment names the other.

    python main.py --config=configs/ilsvrc2012.py --workdir=/tmp/alexnet \
        --config.data_dir=/data/tfds
"""

import ml_collections

# Per-channel RGB means and the PCA of RGB pixel covariance on ImageNet, as
# published with fb.resnet.torch (facebookarchive/fb.resnet.torch,
# datasets/imagenet.lua) for pixels scaled to [0, 1]. The means are rescaled to
# [0, 255], the scale the model sees. The eigenvalues stay on the [0, 1]
# scale, and `preprocessing.pca_lighting` multiplies the shift by 255.
# Eigenvector rows are R, G, B and columns are the principal components.
# `python -m alexnet_jax.tools.dataset_stats` writes the same three values for
# another data set, on the same scales, to a JSON file for input.stats_file.
IMAGENET_MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_PCA_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)


def get_config():
  """Returns the paper's ILSVRC-2012 configuration."""
  config = ml_collections.ConfigDict()

  config.seed = 0  # Seed for initialisation, shuffling, augmentation and dropout.

  # Data.
  config.dataset = 'imagenet2012'  # Dataset name: 'imagenet2012', 'digits' or 'imagefolder'.
  config.data_dir = ml_collections.FieldReference(None, field_type=str)  # TFDS data_dir; None uses TFDS's default (~/tensorflow_datasets).
  config.manual_dir = ml_collections.FieldReference(None, field_type=str)  # Folder with ILSVRC2012_img_{train,val}.tar; None means <data_dir>/downloads/manual.
  config.train_split = 'train'  # TFDS split to train on.
  config.eval_split = 'validation'  # TFDS split to evaluate on.

  config.input = ml_collections.ConfigDict()
  config.input.resize_size = 256  # Shorter side is rescaled to this, then centre-cropped to a square (pixels).
  config.input.mean_rgb = IMAGENET_MEAN_RGB  # Per-channel mean subtracted from [0, 255] pixels.
  config.input.pca_lighting = True  # Paper's PCA colour augmentation; False turns it off.
  config.input.pca_alpha_std = 0.1  # Std of the per-component lighting coefficients alpha.
  config.input.pca_eigval = IMAGENET_PCA_EIGVAL  # Eigenvalues of the RGB covariance, for pixels in [0, 1].
  config.input.pca_eigvec = IMAGENET_PCA_EIGVEC  # Eigenvectors as columns (rows are R, G, B).
  config.input.stats_file = ml_collections.FieldReference(None, field_type=str)  # JSON from tools.dataset_stats; when set it replaces mean_rgb, pca_eigval and pca_eigvec.
  config.input.random_flip = True  # Random horizontal flips in training.
  config.input.shuffle_buffer = 16_384  # Examples in the training shuffle buffer.
  config.input.train_shards = 0  # Training split cut into this many streams; a fixed count gives the same batches for any process count dividing it. 0: one per process.
  config.input.on_bad_image = 'skip'  # Training: 'skip' logs and drops an undecodable image, 'raise' stops; evaluation always raises.
  config.input.threads = -1  # tf.data private thread pool size; -1 uses the cores this process may run on.

  # Model.
  config.model = ml_collections.ConfigDict()
  config.model.num_classes = 1000  # Output classes of fc8.
  config.model.input_size = 227  # Crop size fed to conv1; 224 pads conv1 by (1, 2) so its output stays 55x55.
  config.model.width = 1.0  # Multiplier on every layer's width; 1.0 is the paper's network.
  config.model.columns = 2  # The paper's 2 columns; 1 is its one-column comparison network (needs mesh.model=1).
  config.model.lrn = True  # Local response normalization after conv1 and conv2.
  config.model.pool_window = 3  # Max-pooling window; the paper's overlapping pooling is 3.
  config.model.pool_stride = 2  # Max-pooling stride; 2 with window 3 overlaps.
  config.model.dropout_rate = 0.5  # Dropout on fc6 and fc7 in training.
  config.model.weight_std = 0.01  # Std of the zero-mean normal initialisation of every weight.
  config.model.bias_one = 1.0  # Initial bias of conv2, conv4, conv5, fc6 and fc7 (the paper's 1); the others start at 0.
  config.model.dtype = 'float32'  # Compute dtype: 'float32' or 'bfloat16'; parameters stay float32.

  # Optimisation.
  config.batch_size = 128  # Global batch size over all devices and processes.
  config.num_epochs = 90  # Training length in epochs, about the paper's 90.
  config.num_train_steps = -1  # Training length in steps; overrides num_epochs when > 0.
  config.learning_rate = 0.01  # Initial learning rate.
  config.momentum = 0.9  # SGD momentum.
  config.weight_decay = 5e-4  # Coupled L2 decay, added to the gradient before momentum.
  config.schedule = 'plateau'  # 'plateau' (the paper's: divide by 10 when validation top-1 error stalls), 'step' or 'constant'.
  config.schedule_step_epochs = 30  # Epochs between divisions by 10 for 'step'.
  # NOTE: the paper gives no threshold or patience for its plateau rule; the
  # two values below are this config's choice, at 5000 steps per evaluation.
  config.plateau = ml_collections.ConfigDict()
  config.plateau.threshold = 0.01  # Relative drop of validation top-1 error that counts as an improvement.
  config.plateau.patience = 4  # Evaluations without improvement before the rate is divided by 10.
  config.plateau.max_reductions = 3  # Divisions by 10 (the paper's 3); the next plateau ends training.
  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.param_groups = 'paper'  # 'paper': one rate, decay on all; 'caffe': biases at 2x rate, no decay.
  config.optimizer.momentum_form = 'paper'  # 'paper': v <- 0.9 v - lr g keeps the old rate in v; 'sgd': optax.sgd / torch form.

  # Loop.
  config.log_every_steps = 100  # Steps between training-metric logs.
  config.eval_every_steps = 5000  # Steps between evaluations; -1 evaluates only at the end.
  config.checkpoint_every_steps = 5000  # Steps between checkpoints; a checkpoint is also written at the end.
  config.keep_checkpoints = 3  # Most recent checkpoints kept.
  config.eval_batch_size = 128  # Global evaluation batch size.
  config.num_eval_examples = -1  # Evaluation examples; -1 uses the whole split.
  config.profile_steps = 0  # Steps traced by jax.profiler after the first (compiling) step, into <workdir>/plugins/profile; 0 traces none.

  # Evaluation protocol.
  config.eval = ml_collections.ConfigDict()
  config.eval.crops = 1  # Views per test image: 1 (centre) or 10 (corners, centre and their flips).

  # Parallelism. The mesh has axes ('data', 'model'). The paper's two columns
  # are split over 'model' (1 or 2); 'data' is data parallelism.
  config.mesh = ml_collections.ConfigDict()
  config.mesh.data = -1  # Data-parallel devices; -1 uses all devices left after 'model'.
  config.mesh.model = 2  # Devices over which the two columns are split: 1 or 2.

  return config
