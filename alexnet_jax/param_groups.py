"""SGD with per-parameter groups: weight decay and learning-rate multipliers by path.

Krizhevsky et al. (2012) use one learning rate for every layer and couple the
weight decay into the update of every parameter:

    v <- 0.9 v - 0.0005 lr w - lr grad,    w <- w + v.

Caffe's `bvlc_alexnet` reference instead gives biases a 2x learning rate and
no decay. `optimizer.param_groups` picks one of the two:

- 'paper': decay on every parameter, multiplier 1.
- 'caffe': biases at 2x learning rate without decay, kernels at 1x with decay.

A parameter is a bias when the last key of its path in the parameter dict is
'bias' (for example `conv2/bias`), whatever its rank.
"""

import jax
import jax.numpy as jnp
import optax

PARAM_GROUPS = ('paper', 'caffe')
MOMENTUM_FORMS = ('paper', 'sgd')


def is_bias(path) -> bool:
  """Returns whether a pytree path names a bias."""
  last = path[-1]
  return getattr(last, 'key', getattr(last, 'name', None)) == 'bias'


def decay_mask(groups: str):
  """Returns a function from a parameter tree to its weight-decay mask."""
  def mask(params):
    return jax.tree_util.tree_map_with_path(
        lambda path, _: groups == 'paper' or not is_bias(path), params)
  return mask


def learning_rate_multipliers(groups: str, params):
  """Returns the per-parameter multipliers of the learning rate."""
  def multiplier(path, _):
    return 2.0 if groups == 'caffe' and is_bias(path) else 1.0
  return jax.tree_util.tree_map_with_path(multiplier, params)


def scale_by_group(groups: str) -> optax.GradientTransformation:
  """Multiplies each update by its parameter's learning-rate multiplier."""
  def update(updates, state, params=None):
    del params
    multipliers = learning_rate_multipliers(groups, updates)
    return jax.tree.map(lambda m, u: m * u, multipliers, updates), state
  return optax.GradientTransformation(lambda _: optax.EmptyState(), update)


def sgd(learning_rate, *, momentum, weight_decay, groups, momentum_form):
  """Builds SGD with coupled, masked weight decay and momentum.

  momentum_form 'paper' keeps the learning rate inside the velocity,
  v <- m v - lr (g + decay w) and w <- w + v, as Krizhevsky et al. (2012)
  write it: after a learning-rate change the velocity still carries steps
  taken at the old rate. 'sgd' is the form of `optax.sgd` and
  `torch.optim.SGD`, v <- m v + (g + decay w) and w <- w - lr v, where a new
  rate rescales the whole velocity at once. The two are identical while the
  rate is constant.
  """
  scale = [scale_by_group(groups), optax.scale(-learning_rate)]
  trace = [optax.trace(decay=momentum, nesterov=False)]
  steps = scale + trace if momentum_form == 'paper' else trace + scale
  return optax.chain(
      optax.masked(optax.add_decayed_weights(weight_decay),
                   decay_mask(groups)),
      *steps)


def create_optimizer(config) -> optax.GradientTransformation:
  """Builds the configured SGD with the learning rate as an injected hyperparameter."""
  opt = config.optimizer
  if opt.param_groups not in PARAM_GROUPS:
    raise ValueError(f'optimizer.param_groups={opt.param_groups!r} is '
                     "invalid: use 'paper' or 'caffe'.")
  if opt.momentum_form not in MOMENTUM_FORMS:
    raise ValueError(f'optimizer.momentum_form={opt.momentum_form!r} is '
                     "invalid: use 'paper' or 'sgd'.")
  make = optax.inject_hyperparams(sgd, static_args=(
      'momentum', 'weight_decay', 'groups', 'momentum_form'))
  return make(learning_rate=config.learning_rate, momentum=config.momentum,
              weight_decay=config.weight_decay, groups=opt.param_groups,
              momentum_form=opt.momentum_form)


def set_learning_rate(opt_state, learning_rate):
  """Returns `opt_state` with the injected learning rate replaced."""
  hyperparams = dict(opt_state.hyperparams)
  old = hyperparams['learning_rate']
  hyperparams['learning_rate'] = jnp.asarray(learning_rate, old.dtype)
  return opt_state._replace(hyperparams=hyperparams)
