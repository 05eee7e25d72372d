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
  shift = pca_shift(alpha, eigval, eigvec, pixel_scale)
  return image + tf.cast(shift, image.dtype)


def pca_shift(alpha, eigval, eigvec, pixel_scale=255.0):
  """Returns the [3] RGB shift of `pca_lighting`, on the [0, pixel_scale] scale."""
  eigval = tf.constant(eigval, tf.float32)
  eigvec = tf.constant(eigvec, tf.float32)
  shift = tf.linalg.matvec(eigvec, tf.cast(alpha, tf.float32) * eigval)
  return shift * pixel_scale


def random_pca_alpha(seed, alpha_std):
  """Draws the [3] lighting coefficients alpha ~ N(0, alpha_std)."""
  return tf.random.stateless_normal([3], seed, stddev=alpha_std)


def random_pca_lighting(image, seed, alpha_std, eigval, eigvec,
                        pixel_scale=255.0):
  """Applies `pca_lighting` with alpha ~ N(0, alpha_std), given a stateless seed."""
  alpha = random_pca_alpha(seed, alpha_std)
  return pca_lighting(image, alpha, eigval, eigvec, pixel_scale)


def to_uint8(image):
  """Rounds a float image in [0, 255] to uint8.

  Bilinear and triangle-filter resizing of uint8 pixels give convex
  combinations of them, so the values never leave [0, 255] and a plain cast
  after adding 0.5 rounds them.
  """
  return tf.cast(image + 0.5, tf.uint8)


def random_window_offset(resize_size, crop_size, seed):
  """Draws the (top, left) of a random `crop_size` window in a `resize_size` square."""
  return tf.random.stateless_uniform([2], seed, 0, resize_size - crop_size + 1,
                                     dtype=tf.int32)


def source_window(height, width, offset, resize_size, crop_size):
  """Maps a crop window of the rescaled, centre-cropped image to source pixels.

  Training rescales the shorter side to `resize_size`, takes the centre
  `resize_size` square, then a `crop_size` window at `offset` inside it. This
  returns the same window in the source image's pixels, so only it needs
  decoding.

  Args:
    height: source image height in pixels (int32 scalar).
    width: source image width in pixels (int32 scalar).
    offset: [2] int32 (top, left) of the window inside the centre square.
    resize_size: length of the shorter side after rescaling.
    crop_size: side of the window after rescaling.

  Returns:
    [4] int32 (top, left, crop height, crop width) in source pixels.
  """
  source = tf.cast(tf.stack([height, width]), tf.float32)
  scale = float(resize_size) / tf.reduce_min(source)
  rescaled = tf.maximum(tf.round(source * scale), float(resize_size))
  square_start = tf.floor((rescaled - resize_size) / 2.0)
  size = tf.round(crop_size / scale)
  size = tf.clip_by_value(size, 1.0, tf.reduce_min(source))
  start = tf.floor((square_start + tf.cast(offset, tf.float32)) / scale)
  start = tf.clip_by_value(start, 0.0, source - size)
  window = tf.cast(tf.concat([start, tf.stack([size, size])], 0), tf.int32)
  return window


def decode_and_random_crop(image_bytes, seed, resize_size, crop_size,
                           flip=False):
  """Decodes only the random training window of an encoded image and resizes it.

  JPEG files are read with `tf.image.decode_and_crop_jpeg`, with the window
  computed from `tf.image.extract_jpeg_shape`, so the rest of the image is
  never decoded. Other formats (PNG, GIF, BMP, also under a .jpg name) are
  decoded whole and then cropped. The decoded window matches a crop of the
  full decode up to 2 levels at its edges, where libjpeg upsamples chroma.

  Args:
    image_bytes: scalar string tensor holding the encoded image.
    seed: [2] int32 stateless seed for the window's position.
    resize_size: length of the shorter side after rescaling (the paper's 256).
    crop_size: side of the output window (227).
    flip: bool scalar; True flips the output left to right.

  Returns:
    [crop_size, crop_size, 3] float32 image in [0, 255].
  """
  offset = random_window_offset(resize_size, crop_size, seed)

  def jpeg():
    shape = tf.image.extract_jpeg_shape(image_bytes)
    window = source_window(shape[0], shape[1], offset, resize_size, crop_size)
    return tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3)

  def other():
    image = decode_rgb(image_bytes)
    shape = tf.shape(image)
    window = source_window(shape[0], shape[1], offset, resize_size, crop_size)
    return image[window[0]:window[0] + window[2],
                 window[1]:window[1] + window[3]]

  crop = tf.cond(tf.io.is_jpeg(image_bytes), jpeg, other)
  crop.set_shape([None, None, 3])
  return resize_square(crop, crop_size, flip)


def resize_square(image, size, flip=False):
  """Resizes a square image to `size` x `size` float32, flipped if `flip`.

  Interpolation is bilinear with half-pixel centres. Antialiasing triples
  the cost, so it is used only when the image shrinks by more than 2x: up to
  2x, bilinear interpolation already gives every source pixel weight.
  """
  shrinks_2x = tf.shape(image)[0] > 2 * size
  resized = tf.cond(
      shrinks_2x,
      lambda: tf.image.resize(image, [size, size], antialias=True),
      lambda: tf.image.resize(image, [size, size]))
  return tf.cond(tf.convert_to_tensor(flip), lambda: tf.reverse(resized, [1]),
                 lambda: resized)


def ten_crop(image, size):
  """Returns the paper's ten test views of a square image: [10, size, size, C].

  The views are the centre and the four corner windows (top-left, top-right,
  bottom-left, bottom-right), then the horizontal flips of those five in the
  same order.
  """
  full = tf.shape(image)[0]
  far = full - size
  middle = far // 2
  starts = [(middle, middle), (0, 0), (0, far), (far, 0), (far, far)]
  views = [image[top:top + size, left:left + size] for top, left in starts]
  views = tf.stack(views)
  return tf.concat([views, tf.reverse(views, axis=[2])], axis=0)
