"""Helpers for tests that start real main.py processes.

Every process starts in its own session, and `Processes` kills the whole
process group of each one on exit, so a failed test leaves no orphans.
"""

import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time

REPO_DIR = pathlib.Path(__file__).resolve().parent.parent
# A digits run small enough to train in seconds on 2 CPU cores.
TINY_DIGITS = (
    '--config=configs/digits.py',
    '--config.model.width=0.125',
    '--config.batch_size=16',
    '--config.eval_batch_size=32',
    '--config.num_eval_examples=64',
    '--config.log_every_steps=1',
    '--config.eval_every_steps=0',
)
STEP_LINE = re.compile(r'\] step (\d+): ')


def free_port() -> int:
  """Returns a TCP port on 127.0.0.1 that is free now."""
  with socket.socket() as sock:
    sock.bind(('127.0.0.1', 0))
    return sock.getsockname()[1]


def subprocess_env() -> dict:
  """Returns this environment without the device count that conftest.py forces."""
  env = dict(os.environ)
  env.pop('XLA_FLAGS', None)
  env['JAX_PLATFORMS'] = 'cpu'
  env['PYTHONUNBUFFERED'] = '1'
  return env


def main_command(workdir, *flags) -> list[str]:
  return [sys.executable, str(REPO_DIR / 'main.py'), *TINY_DIGITS,
          f'--workdir={workdir}', *flags]


class Processes:
  """Starts processes with their output in log files and kills them on exit."""

  def __init__(self, log_dir):
    self.log_dir = pathlib.Path(log_dir)
    self.log_dir.mkdir(parents=True, exist_ok=True)
    self.procs, self.logs = [], []

  def start(self, command, name, env=None) -> subprocess.Popen:
    log = self.log_dir / f'{name}.log'
    with open(log, 'wb') as out:
      proc = subprocess.Popen(command, cwd=REPO_DIR, stdout=out,
                              stderr=subprocess.STDOUT,
                              env=env or subprocess_env(),
                              start_new_session=True)
    self.procs.append(proc)
    self.logs.append(log)
    return proc

  def start_pair(self, workdir, port, *flags):
    """Starts processes 0 and 1 of a 2-process job with 2 CPU devices each."""
    return [self.start(main_command(
        workdir, f'--coordinator_address=127.0.0.1:{port}',
        '--num_processes=2', f'--process_id={i}', '--host_device_count=2',
        *flags), f'process_{i}') for i in range(2)]

  def log_text(self, proc) -> str:
    return self.logs[self.procs.index(proc)].read_text(errors='replace')

  def wait_all(self, timeout_s):
    """Waits for every process; raises TimeoutError naming the ones still running."""
    deadline = time.monotonic() + timeout_s
    for proc in self.procs:
      try:
        proc.wait(timeout=max(0.1, deadline - time.monotonic()))
      except subprocess.TimeoutExpired as error:
        raise TimeoutError(
            f'{proc.args} still runs after {timeout_s} s; log:\n'
            f'{self.log_text(proc)[-3000:]}') from error

  def wait_for_line(self, proc, pattern, timeout_s):
    """Polls the process's log until `pattern` matches; returns the match."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
      match = re.search(pattern, self.log_text(proc))
      if match:
        return match
      if proc.poll() is not None:
        break
      time.sleep(0.5)
    raise TimeoutError(f'No line matching {pattern!r} within {timeout_s} s '
                       f'(exit code {proc.poll()}); log:\n'
                       f'{self.log_text(proc)[-3000:]}')

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    for proc in self.procs:
      if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
