"""Tests of the benchmark: FLOP count, the end-to-end command and bf16 compute."""

import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alexnet_jax import flops
from alexnet_jax import sharding
from alexnet_jax import step_timing
from alexnet_jax import train
from configs import digits
from configs import ilsvrc2012

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny_config(dtype='float32'):
  config = digits.get_config()
  config.model.width = 0.125
  config.model.dtype = dtype
  config.batch_size = 8
  return config


def test_paper_forward_macs():
  macs = flops.forward_macs(ilsvrc2012.get_config().model)
  # conv1..fc8 of the paper's network: 0.724 G multiply-adds per image.
  assert round(sum(macs.values()) / 1e9, 3) == 0.724


def test_conv1_macs_by_hand():
  macs = flops.forward_macs(ilsvrc2012.get_config().model)
  assert macs['conv1'] == 55 * 55 * 96 * 11 * 11 * 3


def test_macs_at_224_match_227():
  config = ilsvrc2012.get_config()
  at_227 = sum(flops.forward_macs(config.model).values())
  config.model.input_size = 224
  assert sum(flops.forward_macs(config.model).values()) == at_227


def test_train_flops_leave_out_conv1_input_gradient():
  config = ilsvrc2012.get_config()
  macs = flops.forward_macs(config.model)
  expected = 2 * (3 * sum(macs.values()) - macs['conv1'])
  assert flops.train_flops_per_image(config.model) == expected


def test_check_paper_macs_rejects_wrong_count(monkeypatch):
  config = ilsvrc2012.get_config()
  monkeypatch.setattr(flops, 'PAPER_FORWARD_MACS', 700_000_000)
  with pytest.raises(AssertionError, match='724406816'):
    flops.check_paper_macs(config.model)


def test_parse_mesh_rejects_bad_text():
  with pytest.raises(ValueError, match='DATAxMODEL'):
    step_timing.parse_mesh('2by1')


def test_bench_command_writes_json(tmp_path):
  output = tmp_path / 'bench.json'
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  subprocess.run(
      [sys.executable, '-m', 'alexnet_jax.bench',
       '--config=configs/digits.py', '--config.model.width=0.125',
       '--host_device_count=2', '--meshes=1x1,1x2', '--batch_sizes=8',
       '--warmup=1', '--steps=2', '--peak_tflops=1.0', f'--output={output}'],
      cwd=REPO, env=env, check=True, capture_output=True, timeout=600)
  report = json.loads(output.read_text())
  assert [run['mesh'] for run in report['runs']] == ['1x1', '1x2']
  for run in report['runs']:
    assert len(run['losses']) == 2
    assert all(math.isfinite(loss) for loss in run['losses'])
    assert run['images_per_second'] > 0
    assert 0 < run['mfu'] < 1
    assert run['host_peak_rss_bytes'] > 0


def test_bfloat16_step_keeps_float32_state():
  result = step_timing.time_train_step(_tiny_config('bfloat16'), (1, 1),
                                       warmup=1, steps=2)
  assert result['param_dtypes'] == ['float32']
  assert result['opt_state_dtypes'] == ['float32']
  assert result['loss_dtype'] == 'float32'


def _logits(config, params, graphdef, images, mesh):
  with jax.set_mesh(mesh):
    return train._forward(graphdef, params, images)  # pylint: disable=protected-access


def test_bfloat16_logits_close_to_float32():
  mesh = sharding.create_mesh(_tiny_config().mesh, jax.devices()[:1])
  images = jnp.asarray(np.random.default_rng(0).uniform(
      -100, 100, (8, 67, 67, 3)), jnp.float32)
  logits = {}
  for dtype in ('float32', 'bfloat16'):
    config = _tiny_config(dtype)
    optimizer = train.create_optimizer(config, lambda step: 0.01)
    with jax.set_mesh(mesh):
      state, _, graphdef = train.create_train_state(config, mesh, optimizer)
    logits[dtype] = np.asarray(_logits(config, state.params, graphdef,
                                       images, mesh))
  assert logits['bfloat16'].dtype == np.float32
  error = (np.linalg.norm(logits['bfloat16'] - logits['float32']) /
           np.linalg.norm(logits['float32']))
  # bfloat16 keeps 8 significant bits (relative step 2**-8 = 0.4%).
  assert error < 0.03
  assert error > 0  # The bf16 path really computes in bf16.

