"""Skipping or rejecting images that fail to read or decode, naming each one.

The pipeline maps with `ignore_errors`, which costs nothing per example but
drops a failed example without saying which. So every example carries its
position in the epoch's order, and a sequential `scan` after the map finds
the positions that went missing. `BadImageLog` then names those files by
reading the epoch's order again, which happens only in an epoch that has bad
files. Each epoch ends with a marker element, at which the log reports the
epoch's count.
"""

import collections

import tensorflow as tf
from absl import logging

ON_BAD_IMAGE = ('skip', 'raise')
# Index of the marker element that ends each epoch of a stream.
END_OF_EPOCH = -1


class BadImageLog:
  """Logs, counts or raises on undecodable images, per epoch."""

  def __init__(self, on_bad_image, epoch_names):
    """Args: on_bad_image: 'skip' or 'raise'; epoch_names: epoch -> list of names in stream order."""
    if on_bad_image not in ON_BAD_IMAGE:
      raise ValueError(f'input.on_bad_image={on_bad_image!r} is invalid: use '
                       "'skip' or 'raise'.")
    self.on_bad_image = on_bad_image
    self.counts = collections.Counter()  # Skipped images per epoch.
    self.skipped = []  # (epoch, name) of every skipped image, in stream order.
    self._epoch_names = epoch_names
    self._names = (None, None)  # (epoch, names) of the last epoch looked up.

  def _names_of(self, epoch, first, last):
    if self._names[0] != epoch:
      self._names = (epoch, self._epoch_names(epoch))
    return self._names[1][first:last]

  def report(self, epoch, first, last, end_of_epoch):
    """Handles positions [first, last) that failed, and the epoch's end.

    Returns False, so that a marker is dropped from the stream.
    """
    epoch, first, last = int(epoch), int(first), int(last)
    for name in self._names_of(epoch, first, last) if last > first else ():
      if self.on_bad_image == 'raise':
        raise ValueError(
            f'Cannot read or decode image {name}. Remove or replace the file, '
            'or set --config.input.on_bad_image=skip to skip such images in '
            'training.')
      logging.warning('Skipping undecodable image %s (epoch %d).', name, epoch)
      self.counts[epoch] += 1
      self.skipped.append((epoch, name))
    if bool(end_of_epoch):
      count = self.counts[epoch]
      logging.log(logging.WARNING if count else logging.INFO,
                  'Epoch %d of the input stream skipped %d undecodable '
                  'images.', epoch, count)
    return False


def map_or_report(dataset, process, placeholder, log, parallel,
                  start=(0, 0)):
  """Maps `process` in parallel, dropping and reporting the examples it fails on.

  Args:
    dataset: examples with 'index', 'epoch' and 'position' (in the epoch's
      order). An example whose index is `END_OF_EPOCH`, with position equal to
      the epoch's length, ends the epoch. It is not processed and is dropped.
    process: function of one example to a dict of tensors.
    placeholder: function returning a dict with the structure and dtypes
      that `process` returns, used in place of the markers.
    log: the `BadImageLog` that names and counts bad examples.
    parallel: examples processed at once.
    start: (epoch, position) of the first example, for a resumed stream.

  Returns:
    The dataset of processed examples, in the input order.
  """

  def process_or_mark(example):
    marker = example['index'] == END_OF_EPOCH
    output = tf.cond(marker, placeholder, lambda: process(example))
    return output, example['epoch'], example['position'], marker

  def check(state, element):
    output, epoch, position, marker = element
    expected = tf.where(epoch == state[0], state[1], 0)

    def report():
      kept = tf.py_function(
          lambda *args: log.report(*(a.numpy() for a in args)),
          [epoch, expected, position, marker], tf.bool)
      return tf.reshape(kept, [])

    keep = tf.cond(tf.logical_or(position > expected, marker), report,
                   lambda: tf.constant(True))
    return (epoch, position + 1), (output, keep)

  dataset = dataset.map(process_or_mark, num_parallel_calls=parallel,
                        deterministic=True).ignore_errors()
  initial = (tf.constant(start[0], tf.int64), tf.constant(start[1], tf.int64))
  dataset = dataset.scan(initial, check)
  return dataset.filter(lambda output, keep: keep).map(
      lambda output, keep: output)
