"""What a run builds from its config before the first step: data (with synthetic label noise),
model, source weights, method and optimiser — every check done before anything compiles."""

import dataclasses
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ftjax import data, label_noise, optim, parallel
from ftjax.config_validation import ConfigError, as_config_error, check_fields
from ftjax.configs import check_input_format, field_checks, validate_config
from ftjax.distance import anchors
from ftjax.methods import registry as method_registry
from ftjax.methods.base import Method, MethodContext
from ftjax.models import pretrained, registry as model_registry
from ftjax.models.structure import ModelStructure
from ftjax.train.state import TrainState, create_train_state


class LabelNoise(NamedTuple):
  """The training split's clean labels [n] and the transition matrix [C, C] that corrupted them
  (None without synthetic noise; docs/methods.md §3.1)."""

  clean_labels: np.ndarray
  transition: np.ndarray | None


class Experiment(NamedTuple):
  """Everything a run builds from its config before the first step."""

  config: ml_collections.ConfigDict
  splits: data.Splits
  label_noise: LabelNoise
  num_classes: int
  model: nn.Module
  method: Method
  tx: optax.GradientTransformation
  train_preprocess: data.Preprocess
  eval_preprocess: data.Preprocess
  steps_per_epoch: int
  total_steps: int
  mesh: jax.sharding.Mesh
  initial_state: TrainState
  anchor_params: dict
  structure: ModelStructure


def checked_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config`, validated; for `model='auto'` a validated copy whose architecture and input format
  (model, width, stem, image_size, channels, mean, std) are the pretrained source's."""
  validate_config(config)
  if config.model != "auto":
    return config
  with as_config_error():
    fields = pretrained.source_architecture(config.pretrained)
  resolved = ml_collections.ConfigDict(config.to_dict())
  resolved.update(fields)  # the sources' lists become the fields' tuples
  checks = field_checks()
  check_fields(resolved, {name: checks[name] for name in fields if name in checks})  # the rest is checked above
  check_input_format(resolved)
  return resolved


def resolve_num_classes(config: ml_collections.ConfigDict, splits: data.Splits) -> int:
  """The dataset's class count; a one-line error if `config.num_classes` is set to another."""
  found = splits.train.num_classes
  if config.num_classes and config.num_classes != found:
    raise ConfigError(
      f"config.num_classes={config.num_classes} does not fit dataset {config.dataset!r}, "
      f"which has {found} classes; valid: {found} or 0 (take it from the data)"
    )
  return found


def preprocess_configs(config: ml_collections.ConfigDict) -> tuple[data.Preprocess, data.Preprocess]:
  """(train, eval) preprocessing; augmentation is applied only to training batches."""
  train = data.Preprocess(
    image_size=config.image_size,
    channels=config.channels,
    mean=tuple(config.mean),
    std=tuple(config.std),
    crop_padding=config.crop_padding,
    flip=config.flip,
  )
  return train, dataclasses.replace(train, crop_padding=0, flip=False)


def initial_variables(
  config: ml_collections.ConfigDict, model: nn.Module, structure: ModelStructure, check_method: bool = True
) -> tuple[dict, dict]:
  """(start variables: source weights with a fresh head, anchor params: the docs/methods.md §1 reference
  point). Source shapes and (if `check_method`) the method's layer groups are checked on abstract shapes first."""
  source = pretrained.load_source(config.pretrained)
  dummy = jnp.zeros((1, config.image_size, config.image_size, config.channels), jnp.float32)
  init_fn = lambda key: model.init(key, dummy, train=False)
  key = jax.random.fold_in(jax.random.key(config.seed), 0)
  shapes = jax.eval_shape(init_fn, key)
  if source is not None:
    pretrained.check_fits(source.variables, shapes, structure.head_pattern)
  if check_method:
    method_registry.check_method(config, shapes["params"], structure)
  variables = jax.device_get(jax.jit(init_fn)(key))
  if source is not None:
    variables = pretrained.merge_into(variables, source.variables, structure.head_pattern)
  return variables, anchors.anchor_params(variables["params"], config.reg.head_anchor, structure.head_pattern)


def noise_transition(noise: ml_collections.ConfigDict, num_classes: int) -> np.ndarray | None:
  """The C×C matrix that `config.noise` asks to corrupt training labels with (docs/methods.md §3.1)."""
  if noise.type == "none":
    return None
  if noise.type == "symmetric":
    return label_noise.symmetric_transition(num_classes, noise.rate, noise.symmetric_mode)
  if noise.type == "pairflip":
    return label_noise.pairflip_transition(num_classes, noise.rate)
  return label_noise.check_transition(noise.matrix, num_classes)  # the one check of config.noise.matrix


def with_label_noise(
  config: ml_collections.ConfigDict, splits: data.Splits, num_classes: int
) -> tuple[data.Splits, LabelNoise]:
  """`splits` whose training labels are corrupted as `config.noise` says (seeded by `noise.seed`;
  the test split stays clean), and the clean labels beside them."""
  clean = np.asarray(splits.train.labels)
  transition = noise_transition(config.noise, num_classes)
  if transition is None:
    return splits, LabelNoise(clean, None)
  noisy = label_noise.corrupt_labels(clean, transition, config.noise.seed)
  return splits._replace(train=dataclasses.replace(splits.train, labels=noisy)), LabelNoise(clean, transition)


def check_every_class_trains(config: ml_collections.ConfigDict, train: data.Source) -> None:
  """A one-line ConfigError unless the training split has two classes or more and examples of each."""
  where = f"dataset {config.dataset!r}" + (f" (data_dir={config.data_dir!r})" if config.data_dir else "")
  if train.num_classes < 2:
    raise ConfigError(
      f"{where} has {train.num_classes} class(es), nothing to classify; valid: a dataset of two classes or more"
    )
  counts = np.bincount(np.asarray(train.labels), minlength=train.num_classes)
  missing = np.flatnonzero(counts[: train.num_classes] == 0)
  if len(missing):
    raise ConfigError(
      f"{where}: class {train.class_names[missing[0]]!r} has no training examples ({len(missing)} such "
      f"class(es); the training split has {len(train)} examples); valid: examples of every class in the training "
      "split (lower config.test_fraction, or add examples)"
    )


def load_splits(config: ml_collections.ConfigDict) -> tuple[data.Splits, LabelNoise, int]:
  """(train/test sources fitted to the preprocessing, label noise, class count)."""
  with as_config_error():
    splits = data.load_dataset(
      config.dataset,
      config.data_dir or None,
      image_size=config.image_size,
      test_fraction=config.test_fraction,
      examples_per_class=config.examples_per_class or None,
      seed=config.seed,
    )
  check_every_class_trains(config, splits.train)
  _, eval_pp = preprocess_configs(config)
  splits = data.Splits(*(data.fitted_source(split, eval_pp) for split in splits))
  num_classes = resolve_num_classes(config, splits)
  if config.batch_size > len(splits.train):
    raise ConfigError(
      f"config.batch_size={config.batch_size} exceeds the {len(splits.train)} training "
      f"examples of {config.dataset!r}; valid: at most {len(splits.train)}"
    )
  with as_config_error():
    splits, noise = with_label_noise(config, splits, num_classes)
  return splits, noise, num_classes


class RunSetup(NamedTuple):
  """What a run builds from its config apart from its method, optimiser and train state: all that
  restoring and measuring a finished run needs (`variables` are the start variables, the restore
  target's shapes)."""

  config: ml_collections.ConfigDict
  splits: data.Splits
  label_noise: LabelNoise
  num_classes: int
  model: nn.Module
  variables: dict
  anchor_params: dict
  train_preprocess: data.Preprocess
  eval_preprocess: data.Preprocess
  steps_per_epoch: int
  mesh: jax.sharding.Mesh
  structure: ModelStructure


def build_run_setup(config: ml_collections.ConfigDict, check_method: bool = True) -> RunSetup:
  """Validates `config` (resolving `model='auto'`; the setup's config is the resolved one), loads
  data (with its label noise) and weights, and builds the model and its start variables; the
  method's own checks on the model's shapes run when `check_method`, but no method is built."""
  config = checked_config(config)
  mesh = parallel.data_mesh()
  parallel.check_global_batch_size(config.batch_size, mesh)
  splits, noise, num_classes = load_splits(config)
  model = model_registry.create_model(config.model, num_classes, width=config.width, stem=config.stem)
  structure = model_registry.structure_of(config.model)
  with as_config_error():
    variables, anchor = initial_variables(config, model, structure, check_method)
  steps_per_epoch = data.steps_per_epoch(len(splits.train), config.batch_size)
  train_pp, eval_pp = preprocess_configs(config)
  return RunSetup(
    config, splits, noise, num_classes, model, variables, anchor, train_pp, eval_pp, steps_per_epoch, mesh, structure
  )


def build_experiment(config: ml_collections.ConfigDict, workdir: str | None = None) -> Experiment:
  """Validates `config`, loads data and weights, and builds the model, method and optimiser.
  `workdir` is where a method may keep what it prepares (e.g. an estimated transition matrix);
  `model='auto'` is resolved first, and the experiment's config is the resolved one."""
  setup = build_run_setup(config)
  (
    config,
    splits,
    noise,
    num_classes,
    model,
    variables,
    anchor,
    train_pp,
    eval_pp,
    steps_per_epoch,
    mesh,
    structure,
  ) = setup
  with as_config_error():
    method = method_registry.build_method(
      MethodContext(
        config=config,
        init_variables=variables,
        anchor_variables={"params": anchor},
        train_labels=splits.train.labels,
        num_classes=num_classes,
        noise_transition=noise.transition,
        workdir=workdir,
        model=model,
        train_source=splits.train,
        train_preprocess=eval_pp,
        structure=structure,
      )
    )
  schedule = optim.learning_rate_schedule(config, steps_per_epoch)
  tx = optax.chain(method.pre_optimizer, optim.make_optimizer(config, schedule), method.post_optimizer)
  state = create_train_state(variables, tx, method.init_state, jax.random.key(config.seed))
  return Experiment(
    config,
    splits,
    noise,
    num_classes,
    model,
    method,
    tx,
    train_pp,
    eval_pp,
    steps_per_epoch,
    steps_per_epoch * config.num_epochs,
    mesh,
    state,
    anchor,
    structure,
  )
