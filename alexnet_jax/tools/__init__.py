"""Command-line tools that read a trained run's workdir: figures and the report."""

import matplotlib

# The tools only write PNG files, so they never need a display.
matplotlib.use('Agg')
