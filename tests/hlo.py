"""Reads the collectives out of compiled HLO text and classifies them by mesh axis.

Each collective becomes a `Collective` with its opcode, per-device result
shape, device groups and the layer names found in its op_name metadata (the
`jax.named_scope`s of `models._forward`). Device ids in the groups are the
SPMD partition ids, which index the mesh's devices in row-major order.
"""

import dataclasses
import math
import re

import numpy as np

OPCODES = ('all-gather', 'all-reduce', 'reduce-scatter', 'all-to-all',
           'collective-permute', 'collective-broadcast', 'ragged-all-to-all')
LAYERS = ('conv1', 'lrn1', 'pool1', 'conv2', 'lrn2', 'pool2', 'conv3', 'conv4',
          'conv5', 'pool5', 'fc6', 'fc7', 'fc8')

_INSTRUCTION = re.compile(
    r'^\s*(?:ROOT\s+)?%?(?P<name>[\w.\-]+) = (?P<shape>.+?) '
    r'(?P<opcode>' + '|'.join(OPCODES) + r')(?:-start)?\((?P<rest>.*)$')
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_ARRAY_SHAPE = re.compile(r'[a-z]\w*\[([\d,]*)\]')


@dataclasses.dataclass(frozen=True)
class Collective:
  name: str
  opcode: str
  shape: str  # Result shape text, per device.
  groups: tuple[tuple[int, ...], ...]
  op_name: str

  @property
  def layers(self) -> set[str]:
    """The layer scopes named in the op_name, one per fused source op."""
    return {part for part in re.split(r'[/:()]', self.op_name)
            if part in LAYERS}

  @property
  def op_name_parts(self) -> list[str]:
    """The source op names, one per op that XLA combined into this one.

    A combined op's name is `jit(f)/(name1:name2:...)`.
    """
    tail = self.op_name.split('/', 1)[-1]
    if tail.startswith('(') and tail.endswith(')'):
      return tail[1:-1].split(':')
    return [tail]

  @property
  def backward(self) -> bool:
    return 'transpose(' in self.op_name

  @property
  def elements(self) -> int:
    """Element count of the (first) array in the result shape."""
    dims = _ARRAY_SHAPE.search(self.shape).group(1)
    return math.prod(int(d) for d in dims.split(',') if d)

  def describe(self) -> str:
    layers = ','.join(sorted(self.layers)) or 'no layer'
    return (f'{self.opcode} {self.name} in {layers} over groups '
            f'{list(self.groups)} (op_name {self.op_name!r})')


def _iota_groups(text: str) -> tuple[tuple[int, ...], ...]:
  """Expands the iota form `[g,n]<=[dims]` or `[g,n]<=[dims]T(perm)`."""
  match = re.fullmatch(r'\[([\d,]+)\]<=\[([\d,]+)\](?:T\(([\d,]+)\))?', text)
  if not match:
    raise ValueError(f'Unsupported replica_groups format: {text!r}')
  out_shape = [int(d) for d in match.group(1).split(',')]
  ids = np.arange(math.prod(out_shape)).reshape(
      [int(d) for d in match.group(2).split(',')])
  if match.group(3):
    ids = ids.transpose([int(d) for d in match.group(3).split(',')])
  return tuple(tuple(int(i) for i in row)
               for row in ids.reshape(out_shape[0], -1))


def _mesh_axes_groups(text: str) -> tuple[tuple[int, ...], ...]:
  """Expands `mesh['a'=2,'b'=2] {'a'}`: groups vary the listed axes."""
  match = re.fullmatch(r"mesh\[([^\]]*)\]\s*\{([^}]*)\}", text)
  if not match:
    raise ValueError(f'Unsupported replica_groups format: {text!r}')
  axes = re.findall(r"'(\w+)'=(\d+)", match.group(1))
  names = [name for name, _ in axes]
  grouped = re.findall(r"'(\w+)'", match.group(2))
  if set(grouped) - set(names) or re.search(r'[():]', match.group(2)):
    raise ValueError(f'Unsupported replica_groups format: {text!r}')
  ids = np.arange(math.prod(int(size) for _, size in axes)).reshape(
      [int(size) for _, size in axes])
  kept = [i for i, name in enumerate(names) if name not in grouped]
  varied = [names.index(name) for name in grouped]
  group_size = math.prod(ids.shape[i] for i in varied)
  ids = ids.transpose(kept + varied).reshape(-1, group_size)
  return tuple(tuple(int(i) for i in row) for row in ids)


def _groups(rest: str, device_count: int) -> tuple[tuple[int, ...], ...]:
  """Parses the device groups of one collective instruction."""
  pairs = re.search(r'source_target_pairs=\{((?:\{\d+,\d+\},?)*)\}', rest)
  if pairs:
    return tuple(tuple(int(i) for i in pair.split(','))
                 for pair in re.findall(r'\{(\d+,\d+)\}', pairs.group(1)))
  explicit = re.search(r'replica_groups=\{((?:\{[\d,]*\},?)*)\}', rest)
  if explicit:
    groups = tuple(tuple(int(i) for i in group.split(',') if i)
                   for group in re.findall(r'\{([\d,]*)\}', explicit.group(1)))
    # An empty list means one group of every device.
    return groups or (tuple(range(device_count)),)
  mesh_form = re.search(r"replica_groups=(mesh\[[^\]]*\]\s*\{[^}]*\})", rest)
  if mesh_form:
    return _mesh_axes_groups(mesh_form.group(1))
  iota = re.search(r'replica_groups=(\[[\d,]+\]<=\[[\d,]+\](?:T\([\d,]+\))?)',
                   rest)
  if iota:
    return _iota_groups(iota.group(1))
  raise ValueError(f'No device groups found in {rest[:300]!r}')


def collectives(hlo_text: str, device_count: int) -> list[Collective]:
  """Returns every collective instruction of a compiled HLO module."""
  found = []
  for line in hlo_text.splitlines():
    match = _INSTRUCTION.match(line)
    if not match:
      continue
    rest = match.group('rest')
    op_name = _OP_NAME.search(rest)
    found.append(Collective(
        name=match.group('name'), opcode=match.group('opcode'),
        shape=match.group('shape'), groups=_groups(rest, device_count),
        op_name=op_name.group(1) if op_name else ''))
  return found


def mesh_coordinates(mesh) -> dict[int, dict[str, int]]:
  """Maps each partition id to the device's index along every mesh axis."""
  coords = {}
  for position in range(mesh.devices.size):
    index = np.unravel_index(position, mesh.devices.shape)
    coords[position] = dict(zip(mesh.axis_names, (int(i) for i in index)))
  return coords


def crossed_axes(collective: Collective, coords) -> set[str]:
  """Returns the mesh axes along which some group pairs different devices."""
  axes = set()
  for group in collective.groups:
    for axis in coords[group[0]]:
      if len({coords[device][axis] for device in group}) > 1:
        axes.add(axis)
  return axes
