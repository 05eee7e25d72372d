"""Check that jax.distributed.initialize() detects a SLURM job by itself.

Run one copy per task inside a SLURM job, for example:

  sbatch --ntasks=2 --output=probe-%j.out \
      --wrap="srun .venv/bin/python tests/slurm_probe.py"

Each process forces 2 CPU host devices, selects gloo collectives and calls
jax.distributed.initialize() with no arguments, so the coordinator address,
process count and process id all come from the SLURM_* variables. It then
gathers every process index over gloo and prints one line such as

  slurm_probe: process_index=0 process_count=2 local_devices=2 global_devices=4 gathered=[0, 1]

The file name does not match pytest's test_*.py pattern, so pytest does not
collect it.
"""

import os

# XLA reads the device count when the CPU backend starts, so the flag must be
# set before jax is imported.
os.environ['XLA_FLAGS'] = (
    os.environ.get('XLA_FLAGS', '')
    + ' --xla_force_host_platform_device_count=2').strip()

import jax  # pylint: disable=g-import-not-at-top
from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top


def main():
  jax.config.update('jax_platforms', 'cpu')
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize()

  gathered = multihost_utils.process_allgather(
      np.array([jax.process_index()], dtype=np.int32))
  print(
      f'slurm_probe: process_index={jax.process_index()}'
      f' process_count={jax.process_count()}'
      f' local_devices={jax.local_device_count()}'
      f' global_devices={jax.device_count()}'
      f' gathered={sorted(gathered.ravel().tolist())}',
      flush=True)
  jax.distributed.shutdown()


if __name__ == '__main__':
  main()
