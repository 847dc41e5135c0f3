"""DELTA feature-map regularisation (Li et al. 2019; docs/methods.md §5).

DELTA adds α Σ_s Σ_j w_sj ||FM_sj(W, x) − FM_sj(W^(s), x)||² over the channels j (the last axis) of
the feature maps s that the model's `ModelStructure.feature_maps` names, averaged over the batch,
plus β ||W_head||² over the head group's weight tensors (the layer groups of `config.reg`, as
L2-SP's head term). FM(W^(s), x) is the pretrained network (the start variables, in eval mode) on
the same batch; its variables are carried in the method state. The norm runs over a map's positions
(an image map's pixels; a text encoder's tokens, weighted by the batch's `attention_mask`, so that pads
count for nothing).

The channel weights are fixed before fine-tuning, from the pretrained network: w_s = softmax over
the channels of map s of the increase of the loss when channel j is zeroed, on the first
`delta.num_batches` batches of epoch 0's order (unaugmented). The head is fresh, so the loss is
that of a linear probe fitted on the pretrained features the head reads (`ModelStructure.penultimate`)
of those examples, in place of the head's Dense layer that reads them (the DELTA authors measure with the
pretrained model and a fitted classifier). A channel is zeroed by a Flax
method interceptor under which the module returning the feature map (a ResNet's `stage{s}`)
returns the map with that channel zeroed, and the network runs on from there; a feature map that
no module returns (the small CNN's pooled stage outputs) gets uniform weights 1/C.

`delta.normalization='authors'` takes the authors' code's choices instead of the paper's: weights
softmax(standardised increase / 5), and the feature term ½ Σ_batch Σ_s Σ_j C_s w_sj ||ΔFM_sj||² / (H·W).
"""

import functools
import math
import re
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ftjax import data, layer_groups, tree_paths
from ftjax.methods import distance_regularization
from ftjax.methods.base import LossInputs, Method, MethodContext, cross_entropy
from ftjax.models.structure import ModelStructure

NORMALIZATIONS = ("paper", "authors")
AUTHORS_TEMPERATURE = 5.0

ModulePath = tuple[str, ...]


def feature_map_distance(
  features: dict,
  source_features: dict,
  channel_weights: dict,
  normalization: str = "paper",
  position_mask: jax.Array | None = None,
) -> jax.Array:
  """Σ_s Σ_j w_sj ||F_s[b, ..., j] − F^(s)_s[b, ..., j]||² over the maps s of `channel_weights`
  ({s: [C_s]}; maps [batch, *positions, C_s], the norm over the positions: an image map's H×W, a token map's L),
  averaged over the batch ('paper'), or ½ Σ_b Σ_s Σ_j C_s w_sj ||·||² / P ('authors'; P the positions, H·W).
  `position_mask` [batch, *positions] (a token map's attention mask: 1 for a token, 0 for a pad) weights each
  position's square, and P is then an example's sum of it (its tokens); None: every position counts 1."""
  if normalization not in NORMALIZATIONS:
    raise ValueError(f"normalization={normalization!r} is not valid; valid: {', '.join(NORMALIZATIONS)}")
  total = jnp.zeros(())
  for name, weights in channel_weights.items():
    difference = features[name] - source_features[name]
    squared = jnp.square(difference)
    positions = tuple(range(1, difference.ndim - 1))
    if position_mask is not None:
      if position_mask.shape != difference.shape[:-1]:
        raise ValueError(
          f"feature map {name!r} of shape {difference.shape} does not fit the position mask of shape "
          f"{position_mask.shape}; valid: maps [batch, *positions, channels] over the masked positions"
        )
      squared = squared * position_mask[..., None].astype(squared.dtype)
    per_example = jnp.sum(squared, axis=positions) @ weights  # [batch]
    if normalization == "paper":
      total += jnp.mean(per_example)
    elif position_mask is None:
      total += 0.5 * difference.shape[-1] / math.prod(difference.shape[1:-1]) * jnp.sum(per_example)
    else:
      counts = jnp.maximum(jnp.sum(position_mask, axis=positions).astype(squared.dtype), 1.0)
      total += 0.5 * difference.shape[-1] * jnp.sum(per_example / counts)
  return total


def input_specs(inputs) -> tuple[jax.ShapeDtypeStruct, ...]:
  """The abstract model inputs `inputs` stands for: one shape of float32 images [batch, H, W, C] (a tuple of
  ints), or one array or `jax.ShapeDtypeStruct` per model input (a tuple of them)."""
  if all(isinstance(size, int) for size in inputs):
    return (jax.ShapeDtypeStruct(tuple(inputs), jnp.float32),)
  return tuple(jax.ShapeDtypeStruct(np.shape(x), x.dtype) for x in inputs)


def feature_map_modules(model: nn.Module, variables: dict, inputs, names) -> dict[str, ModulePath | None]:
  """{name: path of the outermost module whose `__call__` returns feature map `name` (the very
  traced value, not an equal one), or None when no module does} for model inputs like `inputs` (`input_specs`:
  an image shape, or the model's inputs); traces shapes only."""
  found = {}

  def trace(*model_inputs):
    outputs = []

    def record(next_fun, args, kwargs, context):
      out = next_fun(*args, **kwargs)
      if context.method_name == "__call__":
        outputs.append((context.module.path, out))
      return out

    with nn.intercept_methods(record):
      _, features = model.apply(variables, *model_inputs, train=False, return_features=True)
    for name in names:
      found[name] = min((path for path, out in outputs if out is features[name]), key=len, default=None)
    return ()

  jax.eval_shape(trace, *input_specs(inputs))
  return found


def output_replaced(path: ModulePath, value: jax.Array):
  """A Flax method interceptor under which the module at `path` returns `value` from `__call__`
  instead of running; use as `with nn.intercept_methods(...)`."""

  def interceptor(next_fun, args, kwargs, context):
    if context.method_name == "__call__" and context.module.path == path:
      return value
    return next_fun(*args, **kwargs)

  return interceptor


def logits_from_feature_map(
  model: nn.Module, variables: dict, inputs, path: ModulePath, feature_map: jax.Array
) -> jax.Array:
  """Eval-mode logits [batch, classes] of the network on `inputs` (images, or a tuple of the model's inputs) run
  on from `feature_map` as the output of the module at `path` (under jit, the layers before it are dead code and
  never run)."""
  inputs = inputs if isinstance(inputs, tuple) else (inputs,)
  with nn.intercept_methods(output_replaced(path, feature_map)):
    return model.apply(variables, *inputs, train=False)


def loss_increases(
  model: nn.Module,
  variables: dict,
  batch: dict,
  modules: dict[str, ModulePath],
  max_elements: int = 2**24,
  inputs: tuple[str, ...] = ("image",),
) -> dict[str, jax.Array]:
  """{map: [C]}: Σ over the batch's real examples (batch['mask'] 1) of the increase of the
  eval-mode cross-entropy when channel j of the map is zeroed, the network (taking the batch entries `inputs`)
  running on from the module `modules[map]`; channels are vmapped in chunks whose copies of the map hold at most
  `max_elements` values (at least one channel)."""
  model_inputs, labels, mask = tuple(batch[key] for key in inputs), batch["label"], batch["mask"]
  logits, features = model.apply(variables, *model_inputs, train=False, return_features=True)
  base = cross_entropy(logits, labels)
  increases = {}
  for name, path in modules.items():
    feature_map = features[name]

    def increase(channel, path=path, feature_map=feature_map):
      zeroed = feature_map * (1.0 - jax.nn.one_hot(channel, feature_map.shape[-1]))
      return jnp.sum(
        mask * (cross_entropy(logits_from_feature_map(model, variables, model_inputs, path, zeroed), labels) - base)
      )

    chunk = max(1, max_elements // feature_map.size)
    increases[name] = jax.lax.map(increase, jnp.arange(feature_map.shape[-1]), batch_size=chunk)
  return increases


@functools.partial(jax.jit, static_argnames=("num_classes", "steps"))
def fit_linear_probe(
  features: jax.Array, labels: jax.Array, mask: jax.Array, num_classes: int, l2: float = 1e-2, steps: int = 300
) -> dict:
  """{'kernel': [D, C], 'bias': [C]}: multinomial logistic regression on features [n, D] (rows
  with mask 0 ignored), fitted on the standardised features z = (x − mean) / std with ridge
  ½·l2·||kernel_z||², by `steps` of Nesterov-accelerated gradient descent from zero with step
  1/L, L = ½ λ_max(mean z̃z̃ᵀ) + l2 bounding the curvature (z̃ = [z, 1]); returned for raw x."""
  weights = mask / jnp.sum(mask)
  mean = weights @ features
  std = jnp.sqrt(weights @ jnp.square(features - mean)) + 1e-6
  inputs = jnp.concatenate([(features - mean) / std, jnp.ones_like(features[:, :1])], axis=1)
  curvature = 0.5 * jnp.linalg.eigvalsh((inputs * weights[:, None]).T @ inputs)[-1] + l2

  def objective(w):
    data_loss = jnp.sum(weights * cross_entropy(inputs @ w, labels))
    return data_loss + 0.5 * l2 * jnp.sum(jnp.square(w[:-1]))

  def step(t, carry):
    w, previous = carry
    lookahead = w + t / (t + 3.0) * (w - previous)
    return lookahead - jax.grad(objective)(lookahead) / curvature, w

  start = jnp.zeros((inputs.shape[1], num_classes))
  w, _ = jax.lax.fori_loop(0, steps, step, (start, start))
  kernel = w[:-1] / std[:, None]
  return {"kernel": kernel, "bias": w[-1] - mean @ kernel}


def attention_weights(increases: jax.Array, normalization: str = "paper") -> jax.Array:
  """[C] summing to 1: softmax(increases) ('paper'), or softmax(standardised increases / 5)
  ('authors'; a constant vector standardises to zeros)."""
  if normalization == "authors":
    standardised = (increases - jnp.mean(increases)) / jnp.maximum(jnp.std(increases), 1e-12)
    return jax.nn.softmax(standardised / AUTHORS_TEMPERATURE)
  return jax.nn.softmax(increases)


class ChannelWeighting(NamedTuple):
  """weights: {map: [C]} summing to 1; zeroed_modules: {map: '/'-joined module path where its
  channels were zeroed, or None (uniform weights)}; probe_accuracy: the linear probe's accuracy
  on the measurement examples (None when no map could be zeroed)."""

  weights: dict
  zeroed_modules: dict
  probe_accuracy: float | None


def with_head_replaced(params, head: str, probe: dict):
  """`params` with the head's Dense layer that reads the penultimate features (within the paths the regex `head`
  fullmatches: the one module holding just a kernel and a bias of the probe's shapes) replaced by `probe`
  ({'kernel', 'bias'}); a one-line error unless the head has exactly one such layer."""
  in_head = re.compile(head).fullmatch
  leaves = {name: leaf for name, leaf in tree_paths.named_leaves(params).items() if in_head(name)}
  shapes = {name: np.shape(leaf) for name, leaf in leaves.items()}
  modules = {name.rpartition("/")[0] for name in leaves}
  probe_shapes = {kind: np.shape(value) for kind, value in probe.items()}
  fitting = [
    module
    for module in sorted(modules)
    if {name.rpartition("/")[2]: shape for name, shape in shapes.items() if name.rpartition("/")[0] == module}
    == probe_shapes
  ]
  if len(fitting) != 1:
    raise ValueError(
      f"DELTA's channel weights need the head to end in one Dense layer (kernel {probe_shapes['kernel']}, bias) on "
      f"the penultimate features; the head has {sorted(leaves)}"
    )
  layer = fitting[0] + "/"
  return tree_paths.map_with_names(
    lambda name, leaf: probe[name.removeprefix(layer)] if name.startswith(layer) else leaf, params
  )


def channel_weighting(
  model: nn.Module,
  variables: dict,
  batches: list[dict],
  structure: ModelStructure,
  num_classes: int,
  normalization: str = "paper",
) -> ChannelWeighting:
  """DELTA's channel weights (docs/methods.md §5) for the feature maps `structure.feature_maps` of the pretrained
  `variables`, measured on `batches` ({'label', 'mask'} and the model's `structure.inputs`, e.g. 'image') with the
  head's last Dense layer replaced by a linear probe on the features it reads (`structure.penultimate`)."""
  names = structure.feature_maps
  example = structure.model_inputs(batches[0])
  modules = feature_map_modules(model, variables, example, names)
  paths = {name: None if path is None else "/".join(path) for name, path in modules.items()}
  shapes = jax.eval_shape(
    lambda *x: model.apply(variables, *x, train=False, return_features=True)[1], *input_specs(example)
  )
  weights = {name: np.full(shapes[name].shape[-1], 1.0 / shapes[name].shape[-1], np.float32) for name in names}
  zeroed = {name: path for name, path in modules.items() if path is not None}
  if not zeroed:
    return ChannelWeighting(weights, paths, None)

  penultimate = jax.jit(lambda v, x: model.apply(v, *x, train=False, return_features=True)[1][structure.penultimate])
  features = np.concatenate([penultimate(variables, structure.model_inputs(b)) for b in batches])
  labels, mask = (np.concatenate([b[key] for b in batches]) for key in ("label", "mask"))
  probe = jax.device_get(fit_linear_probe(features, labels, mask, num_classes))
  probed = {**variables, "params": with_head_replaced(variables["params"], structure.head_pattern, probe)}
  probe_accuracy = float(
    np.sum(mask * (np.argmax(features @ probe["kernel"] + probe["bias"], -1) == labels)) / np.sum(mask)
  )

  measure = jax.jit(lambda v, b: loss_increases(model, v, b, zeroed, inputs=structure.inputs))
  totals = [measure(probed, {k: b[k] for k in (*structure.inputs, "label", "mask")}) for b in batches]
  for name in zeroed:
    mean_increase = np.sum([total[name] for total in totals], axis=0) / np.sum(mask)
    weights[name] = np.asarray(attention_weights(mean_increase, normalization))
  return ChannelWeighting(weights, paths, probe_accuracy)


def measurement_batches(context: MethodContext, num_batches: int) -> list[dict]:
  """The first `num_batches` batches of `context.batch_size` of epoch 0's order (`context.seed`), unaugmented
  (`context.train_preprocess`), whole on every process; the last is padded (mask 0)."""
  source, size = context.train_source, context.batch_size
  order = data.epoch_permutation(len(source), context.seed, 0)[: num_batches * size]
  return list(
    data.eval_batches(source.take(order), context.train_preprocess, size, process_index=0, process_count=1, prefetch=0)
  )


class DeltaState(NamedTuple):
  """source_variables: the pretrained network's {'params', 'batch_stats'} (W^(s), with the fresh
  head, unused); channel_weights: {feature map: [C]}, each summing to 1."""

  source_variables: Any
  channel_weights: dict


def head_weight_paths(config, structure: ModelStructure, params) -> list[str]:
  """The head group's weight-tensor paths under the layer groups of `config.reg` (docs/methods.md §1)."""
  groups = layer_groups.assign_groups(params, distance_regularization.group_patterns(config, structure))
  return [name for name, group in groups.items() if group == structure.head]


def delta(context: MethodContext) -> Method:
  """DELTA: mean cross-entropy + α · feature_map_distance(...) + β ||W_head||² with α, β,
  `num_batches` and `normalization` from `config.delta` (positions weighted by the batch's 'attention_mask' where
  it has one: a text model's token maps); metrics 'cross_entropy',
  'feature_distance' and 'head_l2' (the unscaled terms). Results record the channel weights, the
  modules whose outputs were zeroed and the probe's accuracy."""
  config, model = context.config.delta, context.model
  variables = dict(context.init_variables)
  batches = measurement_batches(context, config.num_batches)
  weighting = channel_weighting(model, variables, batches, context.structure, context.num_classes, config.normalization)
  head_paths = head_weight_paths(context.config, context.structure, variables["params"])

  def loss(inputs: LossInputs):
    state = inputs.method_state
    model_inputs = context.structure.model_inputs(inputs.batch)
    _, source_features = model.apply(state.source_variables, *model_inputs, train=False, return_features=True)
    distance = feature_map_distance(
      inputs.features,
      jax.lax.stop_gradient(source_features),
      state.channel_weights,
      config.normalization,
      inputs.batch.get("attention_mask"),
    )
    leaves = tree_paths.named_leaves(inputs.params)
    head_l2 = sum((jnp.sum(jnp.square(leaves[path])) for path in head_paths), jnp.zeros(()))
    data_loss = jnp.mean(cross_entropy(inputs.logits, inputs.batch["label"]))
    total = data_loss + config.alpha * distance + config.beta * head_l2
    return total, {"cross_entropy": data_loss, "feature_distance": distance, "head_l2": head_l2}

  state = DeltaState(
    source_variables=jax.tree.map(jnp.array, variables),  # a copy: steps donate state
    channel_weights={name: jnp.asarray(w) for name, w in weighting.weights.items()},
  )
  results = {
    "channel_weights": {name: np.asarray(w).tolist() for name, w in weighting.weights.items()},
    "zeroed_modules": weighting.zeroed_modules,
    "probe_accuracy": weighting.probe_accuracy,
  }
  return Method("delta", loss, init_state=state, results=results)
