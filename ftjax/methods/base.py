"""What a fine-tuning method is: a loss over the model's outputs, a state carried in the
`TrainState`, and gradient transformations chained around the optimiser.

A new method is a module that builds a `Method` and one entry in `ftjax.methods.registry`;
the train step never changes.
"""

from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ftjax import data
from ftjax.models.structure import ModelStructure


class LossInputs(NamedTuple):
  """Everything a method's loss may read at one train step.

  logits: [batch, classes]; features: the model's feature dict (its `ModelStructure` names the keys);
  batch: {'image', 'label', 'index'}; method_state: the method's pytree; epoch: int32 scalar;
  params: the params being differentiated.
  """

  logits: jax.Array
  features: dict
  batch: dict
  method_state: Any
  epoch: jax.Array
  params: Any


class Method(NamedTuple):
  """loss(LossInputs) -> (scalar loss, {name: scalar metric});
  update_state(method_state, probs [batch, classes], batch, epoch) -> method_state, applied after
  the forward pass of each step; pre_optimizer / post_optimizer are chained before and after
  the optimiser (penalty gradients before, projections after); results: what results.json
  should record of the method's set-up (e.g. per-layer radii)."""

  name: str
  loss: Callable[[LossInputs], tuple[jax.Array, dict]]
  init_state: Any = ()
  update_state: Callable[[Any, jax.Array, dict, jax.Array], Any] = lambda state, probs, batch, epoch: state
  pre_optimizer: optax.GradientTransformation = optax.identity()
  post_optimizer: optax.GradientTransformation = optax.identity()
  results: dict = {}


class MethodContext(NamedTuple):
  """What a method builder may use: its part of the config (the method's name and own sections:
  `ftjax.methods.registry.method_config`), the start variables (pretrained backbone, fresh
  head), the anchor params W^(s) (docs/methods.md §1), the training split's labels as the method will first
  see them (noisy, under synthetic noise), the true noise transition matrix when known, the
  run's workdir (None outside a run) for what a method prepares before training, the model
  (a Flax module) with the training split, for methods that evaluate it before training, the
  model's structure (its layer groups, head and feature maps: `ftjax.models.ModelStructure`), and the run's
  global batch size and seed (the batches a method measures before training)."""

  config: ml_collections.ConfigDict
  init_variables: dict
  anchor_variables: dict
  train_labels: np.ndarray
  num_classes: int
  noise_transition: np.ndarray | None = None
  workdir: str | None = None
  model: nn.Module | None = None
  train_source: data.Source | None = None
  train_preprocess: data.Preprocess | None = None
  structure: ModelStructure | None = None
  batch_size: int = 64
  seed: int = 0


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example softmax cross-entropy; logits [batch, classes], labels [batch] -> [batch]."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def cross_entropy_loss(inputs: LossInputs) -> tuple[jax.Array, dict]:
  """Mean cross-entropy on the batch's labels: the loss of plain fine-tuning."""
  return jnp.mean(cross_entropy(inputs.logits, inputs.batch["label"])), {}
