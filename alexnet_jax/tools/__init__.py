"""Command-line tools: figures and the report from a trained run's workdir,
and the pixel statistics of a config's data set."""

import matplotlib

# The tools only write PNG files, so they never need a display.
matplotlib.use('Agg')
