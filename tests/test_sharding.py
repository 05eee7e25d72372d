"""Where the two columns live on the mesh, and where the compiled step communicates.

Krizhevsky, Sutskever and Hinton (2012) join their two columns only at the
inputs of conv3, fc6, fc7 and fc8. These tests check that the parameters of
column c sit only on the devices at `model` index c. They also check that
the compiled train step has cross-column collectives only at those four
inputs, and data-parallel collectives only for the gradient and metric
reductions.
"""

import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import hlo
import meshes
from alexnet_jax import models
from alexnet_jax import sharding
from alexnet_jax import summary
from alexnet_jax import train
from configs import ilsvrc2012

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER_PARAMS = 60_965_224
FC8_PARAMS = 4096 * 1000 + 1000
COLUMN_LAYERS = ('conv1', 'conv2', 'conv3', 'conv4', 'conv5', 'fc6', 'fc7')
CROSS_COLUMN_LAYERS = {'conv3', 'fc6', 'fc7', 'fc8'}
COLUMN_LOCAL_LAYERS = {'conv1', 'lrn1', 'pool1', 'conv2', 'lrn2', 'pool2',
                       'conv4', 'conv5', 'pool5'}


@pytest.fixture(scope='module')
def steps():
  return {shape: meshes.compiled_train_step(*shape)
          for shape in ((1, 2), (2, 2))}


def _param_trees(state):
  """Yields (name, tree) for the parameters and each optimizer slot like them."""
  yield 'params', state.params
  structure = jax.tree.structure(state.params)
  slots = jax.tree.leaves(
      state.opt_state, is_leaf=lambda x: jax.tree.structure(x) == structure)
  for index, slot in enumerate(s for s in slots if isinstance(s, dict)):
    yield f'opt_state[{index}]', slot


# Placement of the tiny model's real arrays.


@pytest.mark.parametrize('shape', [(1, 2), (2, 2)])
def test_state_has_momentum_slot(steps, shape):
  names = [name for name, _ in _param_trees(steps[shape]['state'])]
  assert names == ['params', 'opt_state[0]']


@pytest.mark.parametrize('shape', [(1, 2), (2, 2)])
def test_column_params_live_on_column_devices(steps, shape):
  mesh = steps[shape]['mesh']
  coords = {device: index[1] for index, device in np.ndenumerate(mesh.devices)}
  for tree_name, tree in _param_trees(steps[shape]['state']):
    for path, array in summary.flatten(tree):
      if path.split('/')[0] not in COLUMN_LAYERS:
        continue
      full = np.asarray(array)
      for shard in array.addressable_shards:
        column = coords[shard.device]
        where = f'{tree_name}/{path} on {shard.device}'
        assert shard.index[0] == slice(column, column + 1), where
        assert shard.data.shape == (1,) + full.shape[1:], where
        np.testing.assert_array_equal(np.asarray(shard.data)[0], full[column],
                                      err_msg=where)


@pytest.mark.parametrize('shape', [(1, 2), (2, 2)])
def test_each_column_on_its_model_index(steps, shape):
  mesh = steps[shape]['mesh']
  params = steps[shape]['state'].params
  for layer in COLUMN_LAYERS:
    for name in ('kernel', 'bias'):
      array = params[layer][name]
      for column in range(models.NUM_COLUMNS):
        holders = {shard.device for shard in array.addressable_shards
                   if shard.index[0].start == column}
        expected = set(mesh.devices[:, column])
        assert holders == expected, f'{layer}/{name} column {column}'


@pytest.mark.parametrize('shape', [(1, 2), (2, 2)])
def test_fc8_replicated_on_every_device(steps, shape):
  mesh = steps[shape]['mesh']
  for tree_name, tree in _param_trees(steps[shape]['state']):
    for name, array in tree['fc8'].items():
      assert len(array.addressable_shards) == mesh.size
      for shard in array.addressable_shards:
        assert shard.data.shape == array.shape, f'{tree_name}/fc8/{name}'


# Placement of the full-size model, from shapes and shardings only.


def _full_state_shapes(data, model):
  """Returns the full-size train state's shapes and shardings on a mesh."""
  config = ilsvrc2012.get_config()
  config.mesh.data, config.mesh.model = data, model
  mesh = meshes.create_mesh(data, model)
  optimizer = train.create_optimizer(config, lambda step: 0.01)
  _, abstract_model = train.model_graph(config)

  def init():
    model_ = models.create_model(config.model, config.seed)
    params = nnx.to_pure_dict(nnx.state(model_, nnx.Param))
    return train.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                            opt_state=optimizer.init(params))

  shapes = jax.eval_shape(init)
  return shapes, train.state_shardings(mesh, abstract_model, shapes)


@pytest.fixture(scope='module')
def full_state():
  return _full_state_shapes(1, 2)


def test_full_model_has_paper_param_count(full_state):
  shapes, _ = full_state
  assert models.count_params(shapes.params) == PAPER_PARAMS


@pytest.mark.parametrize('layer,inputs', [('fc6', 6 * 6 * 256),
                                          ('fc7', 4096)])
def test_fc_split_by_output_neuron(full_state, layer, inputs):
  shapes, shardings = full_state
  kernel = shapes.params[layer]['kernel']
  shard = shardings.params[layer]['kernel'].shard_shape(kernel.shape)
  assert shard == (1, inputs, 2048)


@pytest.mark.parametrize('layer', ['fc6', 'fc7'])
def test_fc_bias_split_by_output_neuron(full_state, layer):
  shapes, shardings = full_state
  bias = shapes.params[layer]['bias']
  assert shardings.params[layer]['bias'].shard_shape(bias.shape) == (1, 2048)


def test_full_fc8_replicated(full_state):
  shapes, shardings = full_state
  kernel = shapes.params['fc8']['kernel']
  assert shardings.params['fc8']['kernel'].shard_shape(kernel.shape) == (
      4096, 1000)


def _bytes_per_device(shapes, shardings):
  per_device = 0
  for shape, sharding_ in zip(jax.tree.leaves(shapes),
                              jax.tree.leaves(shardings)):
    count = int(np.prod(sharding_.shard_shape(shape.shape)))
    per_device += count * np.dtype(shape.dtype).itemsize
  return per_device


def test_params_per_device_half_plus_fc8(full_state):
  shapes, shardings = full_state
  expected = ((PAPER_PARAMS - FC8_PARAMS) // 2 + FC8_PARAMS) * 4
  assert _bytes_per_device(shapes.params, shardings.params) == expected


def test_momentum_per_device_like_params(full_state):
  shapes, shardings = full_state
  expected = ((PAPER_PARAMS - FC8_PARAMS) // 2 + FC8_PARAMS) * 4
  (_, trace), = list(_param_trees(shapes))[1:]
  (_, trace_shardings), = list(_param_trees(shardings))[1:]
  assert _bytes_per_device(trace, trace_shardings) == expected


def _run_main(args, device_count, tmp_path):
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  env['JAX_PLATFORMS'] = 'cpu'
  env['JAX_LOG_COMPILES'] = '1'
  return subprocess.run(
      [sys.executable, os.path.join(REPO, 'main.py'),
       f'--workdir={tmp_path}', f'--host_device_count={device_count}', *args],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
      check=False)


@pytest.fixture(scope='module')
def summary_output(tmp_path_factory):
  result = _run_main(['--config=configs/ilsvrc2012.py', '--mode=summary'], 2,
                     tmp_path_factory.mktemp('summary'))
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


def _summary_number(text, label):
  match = re.search(re.escape(label) + r': ([\d,]+)', text)
  assert match, f'{label!r} missing from:\n{text}'
  return int(match.group(1).replace(',', ''))


def test_summary_total_params(summary_output):
  assert _summary_number(summary_output, 'Total parameters') == PAPER_PARAMS


def test_summary_bytes_per_device(summary_output):
  expected = ((PAPER_PARAMS - FC8_PARAMS) // 2 + FC8_PARAMS) * 4
  got = _summary_number(summary_output, 'Parameter bytes per device')
  assert got == expected


def test_summary_mesh_is_paper_split(summary_output):
  assert 'Mesh: data=1 x model=2 over 2 devices' in summary_output


# Mesh errors.


@pytest.mark.parametrize('data,model,devices,parts', [
    (-1, 3, 4, ('model=3', '4 devices')),
    (-1, 0, 4, ('model=0', '4 devices')),
    (-1, 2, 3, ('model=2', '3 devices')),
    (3, 1, 4, ('data=3', 'model=1', '4 devices')),
    (2, 2, 2, ('data=2', 'model=2', '2 devices')),
])
def test_mesh_error_names_mesh(data, model, devices, parts):
  config = meshes.tiny_config(data, model)
  with pytest.raises(ValueError) as error:
    sharding.mesh_shape(config.mesh, devices)
  for part in parts:
    assert part in str(error.value)


def test_main_rejects_mesh_before_compiling(tmp_path):
  result = _run_main(['--config=configs/digits.py', '--config.mesh.data=3'], 2,
                     tmp_path)
  assert result.returncode != 0
  for part in ('data=3', 'model=1', '2 devices'):
    assert part in result.stderr, result.stderr[-2000:]
  assert 'Compiling' not in result.stderr, result.stderr[-2000:]
  assert not os.path.exists(os.path.join(tmp_path, 'checkpoints'))


# Collectives of the compiled train step.


def _collectives(step):
  mesh = step['mesh']
  coords = hlo.mesh_coordinates(mesh)
  found = []
  for collective in hlo.collectives(step['hlo'], mesh.size):
    axes = hlo.crossed_axes(collective, coords)
    if axes:  # Groups of one device move nothing.
      found.append((collective, axes))
  return found


def test_one_device_step_has_no_collectives():
  """On a 1x1 mesh the model runs outside shard_map and copies nothing."""
  text = meshes.compiled_train_step(1, 1)['hlo']
  pattern = r' (%s)(-start)?\(' % '|'.join(map(re.escape, hlo.OPCODES))
  assert re.search(pattern, text) is None
  # The pattern finds the collectives of a two-device step.
  assert re.search(pattern, meshes.compiled_train_step(1, 2)['hlo'])


@pytest.mark.parametrize('shape', [(1, 2), (2, 2)])
def test_column_local_layers_exchange_nothing(steps, shape):
  for collective, axes in _collectives(steps[shape]):
    local = collective.layers & COLUMN_LOCAL_LAYERS
    if not local:
      continue
    # The data-parallel gradient all-reduce of these layers is allowed.
    assert axes == {models.DATA_AXIS}, collective.describe()
    assert collective.opcode == 'all-reduce', collective.describe()


@pytest.mark.parametrize('shape', [(1, 2), (2, 2)])
def test_no_collective_spans_both_axes(steps, shape):
  for collective, axes in _collectives(steps[shape]):
    assert len(axes) == 1, collective.describe()


def _cross_column(step):
  return [c for c, axes in _collectives(step) if axes == {models.COLUMN_AXIS}]


@pytest.mark.parametrize('shape', [(1, 2), (2, 2)])
def test_cross_column_only_at_paper_inputs(steps, shape):
  for collective in _cross_column(steps[shape]):
    assert collective.layers <= CROSS_COLUMN_LAYERS, collective.describe()
    assert len(collective.layers) == 1, collective.describe()


@pytest.mark.parametrize('shape', [(1, 2), (2, 2)])
def test_cross_column_forward_is_all_gather(steps, shape):
  forward = [c for c in _cross_column(steps[shape]) if not c.backward]
  for collective in forward:
    assert collective.opcode == 'all-gather', collective.describe()
  layers = sorted(layer for c in forward for layer in c.layers)
  assert layers == sorted(CROSS_COLUMN_LAYERS)


@pytest.mark.parametrize('shape', [(1, 2), (2, 2)])
def test_cross_column_backward_is_reduce_scatter(steps, shape):
  backward = [c for c in _cross_column(steps[shape]) if c.backward]
  for collective in backward:
    assert collective.opcode == 'reduce-scatter', collective.describe()
  # fc8's input gradient is identical on both column devices: no exchange.
  layers = sorted(layer for c in backward for layer in c.layers)
  assert layers == ['conv3', 'fc6', 'fc7']


@pytest.mark.parametrize('shape', [(1, 2), (2, 2)])
def test_cross_column_bytes_match_hlo(steps, shape):
  step = steps[shape]
  geom = models.geometry(step['config'].model)
  local_batch = step['config'].batch_size // shape[0]
  gathers = [c for c in _cross_column(step) if c.opcode == 'all-gather']
  received = sum(c.elements for c in gathers) // models.NUM_COLUMNS
  assert received * 4 // local_batch == models.cross_column_bytes(geom)


@pytest.mark.parametrize('shape', [(1, 2), (2, 2)])
def test_cross_column_backward_bytes_match_hlo(steps, shape):
  step = steps[shape]
  geom = models.geometry(step['config'].model)
  local_batch = step['config'].batch_size // shape[0]
  scatters = [c for c in _cross_column(step) if c.opcode == 'reduce-scatter']
  sent = sum(c.elements for c in scatters)
  assert sent * 4 // local_batch == models.cross_column_bytes(
      geom, backward=True)


def _is_reduction(op_name_part):
  gradient = 'transpose(' in op_name_part and 'psum' in op_name_part
  return gradient or op_name_part.endswith('reduce_sum')


@pytest.mark.parametrize('shape', [(1, 2), (2, 2)])
def test_nothing_gathers_batch_over_data(steps, shape):
  for collective, axes in _collectives(steps[shape]):
    if models.DATA_AXIS in axes:
      assert collective.opcode not in ('all-gather', 'all-to-all',
                                       'collective-permute'), (
                                           collective.describe())


@pytest.mark.parametrize('shape', [(1, 2), (2, 2)])
def test_data_collectives_are_reductions(steps, shape):
  for collective, axes in _collectives(steps[shape]):
    if models.DATA_AXIS not in axes:
      continue
    assert collective.opcode == 'all-reduce', collective.describe()
    for part in collective.op_name_parts:
      assert _is_reduction(part), f'{part} in {collective.describe()}'


def test_gradients_reduced_over_data(steps):
  reduced = set()
  for collective, axes in _collectives(steps[(2, 2)]):
    if axes == {models.DATA_AXIS} and collective.backward:
      reduced |= collective.layers
  assert reduced >= set(COLUMN_LAYERS) | {'fc8'}
