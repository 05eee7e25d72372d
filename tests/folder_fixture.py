"""Writes small image folders (train/<class>/, val/<class>/) of real photographs.

The images are crops of photographs bundled with scikit-image, encoded with
PIL. `write_bad_files` adds the damaged and unusual files of a real-world
folder: a truncated JPEG, an empty file, a text file, CMYK, greyscale, a PNG
under a .JPEG name and an image smaller than the 227 crop.
"""

import io
import os

import numpy as np
from PIL import Image
import skimage.data

PHOTOS = ('astronaut', 'coffee', 'chelsea', 'rocket', 'immunohistochemistry')
# The three files that cannot be decoded.
BROKEN = ('truncated.jpg', 'empty.jpg', 'text.jpg')
# The unusual files that decode to valid RGB images.
UNUSUAL = ('cmyk.jpg', 'grey.jpg', 'png_named.JPEG', 'small.jpg')


def photo(index, size, rng):
  """Returns a random crop of a bundled photograph, resized to size=(w, h)."""
  image = getattr(skimage.data, PHOTOS[index % len(PHOTOS)])()
  height, width = image.shape[:2]
  crop = min(height, width) * 3 // 4
  top = rng.integers(0, height - crop + 1)
  left = rng.integers(0, width - crop + 1)
  window = Image.fromarray(image[top:top + crop, left:left + crop])
  return window.resize(size, Image.BILINEAR)


def encode(image, image_format='JPEG', quality=90):
  buffer = io.BytesIO()
  image.save(buffer, image_format, quality=quality)
  return buffer.getvalue()


def write_image_folder(root, num_classes=2, train_per_class=4, val_per_class=3,
                       size=(80, 60), seed=0):
  """Writes a folder of `num_classes` classes; returns its root as a string."""
  rng = np.random.default_rng(seed)
  for split, count in (('train', train_per_class), ('val', val_per_class)):
    for label in range(num_classes):
      class_dir = os.path.join(root, split, f'class{label}')
      os.makedirs(class_dir, exist_ok=True)
      for i in range(count):
        data = encode(photo(label + i, size, rng))
        with open(os.path.join(class_dir, f'{i:03d}.jpg'), 'wb') as f:
          f.write(data)
  return str(root)


def write_bad_files(class_dir, seed=0):
  """Writes BROKEN and UNUSUAL into `class_dir`; returns {name: path}."""
  rng = np.random.default_rng(seed)
  image = photo(0, (300, 240), rng)
  jpeg = encode(image)
  contents = {
      'truncated.jpg': jpeg[:len(jpeg) // 4],
      'empty.jpg': b'',
      'text.jpg': b'This is a text file, not a JPEG image.\n',
      'cmyk.jpg': encode(image.convert('CMYK')),
      'grey.jpg': encode(image.convert('L')),
      'png_named.JPEG': encode(image, 'PNG'),
      'small.jpg': encode(photo(1, (100, 80), rng)),
  }
  paths = {}
  for name, data in contents.items():
    paths[name] = os.path.join(class_dir, name)
    with open(paths[name], 'wb') as f:
      f.write(data)
  return paths
