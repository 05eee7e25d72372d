"""Image operations of the paper's input pipeline, as TensorFlow functions.

Each op works on one HWC image, both eagerly and inside `tf.data.Dataset.map`.
Random ops take an explicit stateless seed, a [2] int32 tensor, so the same
seed always gives the same crop, flip and lighting.
"""

import tensorflow as tf


def decode_rgb(image_bytes):
  """Decodes a JPEG, PNG, GIF or BMP image to a [height, width, 3] uint8 tensor.

  Greyscale images are repeated over three channels.
  """
  image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
  image.set_shape([None, None, 3])
  return image


def resize_shorter_side(image, size):
  """Rescales an image so that its shorter side is `size` pixels.

  Args:
    image: [height, width, channels] tensor.
    size: target length of the shorter side.

  Returns:
    The rescaled float32 image.
  """
  shape = tf.shape(image)
  height = tf.cast(shape[0], tf.float32)
  width = tf.cast(shape[1], tf.float32)
  scale = tf.cast(size, tf.float32) / tf.minimum(height, width)
  new_height = tf.cast(tf.round(height * scale), tf.int32)
  new_width = tf.cast(tf.round(width * scale), tf.int32)
  resized = tf.image.resize(tf.cast(image, tf.float32),
                            [tf.maximum(new_height, size),
                             tf.maximum(new_width, size)],
                            method='bilinear', antialias=True)
  return resized


def center_crop(image, size):
  """Crops the central `size` x `size` window of an image."""
  shape = tf.shape(image)
  top = (shape[0] - size) // 2
  left = (shape[1] - size) // 2
  return image[top:top + size, left:left + size]


def random_crop(image, size, seed):
  """Crops a uniformly placed `size` x `size` window, given a stateless seed."""
  channels = image.shape[-1] or tf.shape(image)[-1]
  return tf.image.stateless_random_crop(image, [size, size, channels], seed)


def random_flip(image, seed):
  """Flips an image left to right with probability 1/2, given a stateless seed."""
  return tf.image.stateless_random_flip_left_right(image, seed)


def pca_lighting(image, alpha, eigval, eigvec, pixel_scale=255.0):
  """Adds the paper's PCA lighting shift to every pixel.

  The shift is [p1 p2 p3] @ (alpha * eigval), where p_i are the **columns** of
  `eigvec` (rows are R, G, B), as in Krizhevsky et al. (2012), Section 4.1.

  Args:
    image: [height, width, 3] float image in [0, pixel_scale].
    alpha: [3] coefficients, drawn from N(0, 0.1) in training.
    eigval: [3] eigenvalues of the RGB covariance for pixels in [0, 1].
    eigvec: [3, 3] eigenvectors of that covariance, one per column.
    pixel_scale: value of a white pixel, which scales the [0, 1] shift.

  Returns:
    The shifted image, same shape and dtype.
  """
  eigval = tf.constant(eigval, tf.float32)
  eigvec = tf.constant(eigvec, tf.float32)
  shift = tf.linalg.matvec(eigvec, tf.cast(alpha, tf.float32) * eigval)
  return image + tf.cast(shift * pixel_scale, image.dtype)


def random_pca_lighting(image, seed, alpha_std, eigval, eigvec,
                        pixel_scale=255.0):
  """Applies `pca_lighting` with alpha ~ N(0, alpha_std), given a stateless seed."""
  alpha = tf.random.stateless_normal([3], seed, stddev=alpha_std)
  return pca_lighting(image, alpha, eigval, eigvec, pixel_scale)


def subtract_mean(image, mean_rgb):
  return image - tf.constant(mean_rgb, image.dtype)
