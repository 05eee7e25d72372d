"""main.py as a user runs it: the summary, config errors and the miniature ILSVRC-2012 path."""

import json
import os
import subprocess
import sys

import pytest

import ilsvrc_fixture

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_main(*args, timeout=600):
  """Runs main.py in a fresh process and returns the completed process."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  env.pop('XLA_FLAGS', None)
  return subprocess.run(
      [sys.executable, os.path.join(REPO_ROOT, 'main.py'), *args],
      cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout,
      check=False)


def test_summary_prints_paper_total(tmp_path):
  result = run_main('--config=configs/ilsvrc2012.py', f'--workdir={tmp_path}',
                    '--mode=summary', '--host_device_count=2')
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'Total parameters: 60,965,224' in result.stdout
  assert 'conv3/kernel' in result.stdout
  assert not os.listdir(tmp_path)


def test_unknown_config_key_fails(tmp_path):
  result = run_main('--config=configs/digits.py', f'--workdir={tmp_path}',
                    '--config.bacth_size=32')
  assert result.returncode != 0
  assert 'bacth_size' in result.stderr


def test_batch_not_divisible_names_both(tmp_path):
  result = run_main('--config=configs/digits.py', f'--workdir={tmp_path}',
                    '--host_device_count=2', '--config.mesh.data=2',
                    '--config.batch_size=63')
  assert result.returncode != 0
  assert 'batch_size=63 is not divisible by the 2 data-parallel' in (
      result.stderr)
  assert 'First train step compiled' not in result.stderr


def test_mesh_that_cannot_be_built(tmp_path):
  result = run_main('--config=configs/digits.py', f'--workdir={tmp_path}',
                    '--host_device_count=2', '--config.mesh.model=3')
  assert result.returncode != 0
  assert 'mesh.model=3 is invalid' in result.stderr


@pytest.fixture(scope='module')
def imagenet_dirs(tmp_path_factory):
  """A miniature ILSVRC-2012 manual dir with both tars, not yet prepared."""
  root = tmp_path_factory.mktemp('ilsvrc')
  manual_dir = root / 'manual'
  manual_dir.mkdir()
  written = ilsvrc_fixture.build_manual_dir(str(manual_dir), num_classes=3,
                                            train_per_class=4, num_val=6)
  return root / 'tfds', manual_dir, written


def test_miniature_ilsvrc_trains_and_evaluates(imagenet_dirs, tmp_path):
  data_dir, manual_dir, _ = imagenet_dirs
  result = run_main(
      '--config=configs/ilsvrc2012.py', f'--workdir={tmp_path}',
      '--host_device_count=2', f'--config.data_dir={data_dir}',
      f'--config.manual_dir={manual_dir}', '--config.model.width=0.125',
      '--config.batch_size=4', '--config.eval_batch_size=4',
      '--config.num_train_steps=2', '--config.log_every_steps=1',
      '--config.input.shuffle_buffer=16')
  assert result.returncode == 0, result.stderr[-3000:]
  with open(tmp_path / 'metrics.jsonl', encoding='utf-8') as f:
    records = [json.loads(line) for line in f]
  evals = [r for r in records if 'eval_top1_error' in r]
  assert [r['step'] for r in records if 'train_loss' in r] == [1, 2]
  assert len(evals) == 1
  # Every one of the 6 validation images is scored once.
  assert evals[0]['eval_examples'] == 6
  assert os.path.isdir(tmp_path / 'checkpoints' / '2')
  assert "'model': 2" in result.stderr
