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

from ftjax import config_layout, data, label_noise, optim, parallel
from ftjax.config_validation import ConfigError, as_config_error, check_fields
from ftjax.configs import check_input_format, field_checks, validate_config
from ftjax.data import holdout, labels_file, tokenization
from ftjax.distance import anchors
from ftjax.methods import registry as method_registry
from ftjax.methods.base import Method, MethodContext
from ftjax.models import pretrained, registry as model_registry
from ftjax.models.structure import ModelStructure
from ftjax.train.state import TrainState, create_train_state
from ftjax.train.steps import CompiledSteps

EXAMPLE_TOKENS = 16  # the length of the token arrays a text model is initialised on


class LabelNoise(NamedTuple):
  """The training split's clean labels [n] and the transition matrix [C, C] that corrupted them
  (None without synthetic noise; docs/methods.md §3.1)."""

  clean_labels: np.ndarray
  transition: np.ndarray | None


class Experiment(NamedTuple):
  """Everything a run builds from its config before the first step."""

  config: ml_collections.ConfigDict
  splits: "RunSplits"
  label_noise: LabelNoise
  num_classes: int
  model: nn.Module
  method: Method
  tx: optax.GradientTransformation
  train_preprocess: data.BatchInputs
  eval_preprocess: data.BatchInputs
  steps_per_epoch: int
  total_steps: int
  mesh: jax.sharding.Mesh
  initial_state: TrainState
  anchor_params: dict
  structure: ModelStructure


def checked_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config`, validated; for `model='auto'` a validated copy whose architecture and input format
  (model, width, stem, pooling, vocab_size, image_size, channels, mean, std) are the pretrained source's; for a text
  model a copy whose `data.tokenizer` is the source's when it was '' (`with_checked_tokens`)."""
  validate_config(config)
  return with_checked_tokens(config if config.model.name != "auto" else with_source_architecture(config))


def with_source_architecture(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A validated copy of `config` (model.name 'auto') whose architecture and input format are the pretrained
  source's."""
  with as_config_error():
    fields = pretrained.source_architecture(config.model.pretrained)
  resolved = config.to_dict()
  for key, value in fields.items():
    config_layout.set_path(
      resolved, pretrained.ARCHITECTURE_FIELDS[key], tuple(value) if isinstance(value, list) else value
    )
  resolved = ml_collections.ConfigDict(resolved)
  checks = field_checks()
  paths = [pretrained.ARCHITECTURE_FIELDS[key] for key in fields]
  check_fields(resolved, {path: checks[path] for path in paths if path in checks})  # the rest is checked above
  check_input_format(resolved.data)
  return resolved


def with_checked_tokens(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config` with its token inputs checked against the model: an image model takes no tokenizer; a text model's
  tokenizer (`data.tokenizer`, or when '' the pretrained source's, set in a copy) fits its word embedding and
  `data.max_length` its positions. One-line `ConfigError`s name the field."""
  name, tokenizer = config.model.name, config.data.tokenizer
  tokens = model_registry.token_format(name, config.model.vocab_size)
  if tokens is None:
    if tokenizer:
      raise ConfigError(
        f"config.data.tokenizer={tokenizer!r} is for text models, but model {name!r} takes images; valid: '', or a "
        f"text model ({', '.join(model_registry.text_models())})"
      )
    return config
  if config.data.max_length > tokens.max_length:
    raise ConfigError(
      f"config.data.max_length={config.data.max_length} exceeds the {tokens.max_length} token positions of model "
      f"{name!r}; valid: an integer in [1, {tokens.max_length}]"
    )
  if not tokenizer:
    with as_config_error():
      tokenizer = pretrained.source_tokenizer(config.model.pretrained)
    if tokenizer is None:
      raise ConfigError(
        f"config.data.tokenizer='' but text model {name!r} needs one, and config.model.pretrained="
        f"{config.model.pretrained!r} has none beside it; valid: a tokenizer.json or a Hugging Face model directory "
        "holding one"
      )
  with as_config_error():
    vocabulary = tokenization.load_tokenizer(tokenizer).get_vocab_size()
  if vocabulary > tokens.vocab_size:
    raise ConfigError(
      f"config.data.tokenizer={tokenizer!r} has {vocabulary} tokens, more than the {tokens.vocab_size} rows of the "
      f"word embedding of model {name!r}; valid: a tokenizer of at most {tokens.vocab_size} tokens, or "
      f"config.model.vocab_size={vocabulary}"
    )
  if tokenizer == config.data.tokenizer:
    return config
  resolved = ml_collections.ConfigDict(config.to_dict())
  resolved.data.tokenizer = tokenizer
  return resolved


def check_source(config: ml_collections.ConfigDict) -> None:
  """One-line `ConfigError` unless the source weights `config.model.pretrained` can be read (a workdir's checkpoint
  is read here, once JAX has started; the run then reuses what was read)."""
  with as_config_error():
    pretrained.load_source(config.model.pretrained)


def resolve_num_classes(config: ml_collections.ConfigDict, splits: data.Splits) -> int:
  """The dataset's class count; a one-line error if `config.data.num_classes` is set to another."""
  found = splits.train.num_classes
  if config.data.num_classes and config.data.num_classes != found:
    raise ConfigError(
      f"config.data.num_classes={config.data.num_classes} does not fit dataset {config.data.name!r}, "
      f"which has {found} classes; valid: {found} or 0 (take it from the data)"
    )
  return found


def preprocess_configs(config: ml_collections.ConfigDict) -> tuple[data.BatchInputs, data.BatchInputs]:
  """(train, eval) preprocessing of the checked `config`: for a text model the tokenisation of `data.tokenizer`
  (pads of the model's pad id, `data.max_length` tokens, kept in `data.token_cache`) for both; for an image model
  the image `Preprocess`, with augmentation only in training."""
  tokens = model_registry.token_format(config.model.name, config.model.vocab_size)
  if tokens is not None:
    text = data.TextPreprocess(
      config.data.tokenizer, config.data.max_length, tokens.pad_id, config.data.token_cache or None
    )
    return text, text
  train = data.Preprocess(
    image_size=config.data.image_size,
    channels=config.data.channels,
    mean=tuple(config.data.mean),
    std=tuple(config.data.std),
    crop_padding=config.data.crop_padding,
    flip=config.data.flip,
  )
  return train, dataclasses.replace(train, crop_padding=0, flip=False)


def initial_variables(
  config: ml_collections.ConfigDict, model: nn.Module, structure: ModelStructure, check_method: bool = True
) -> tuple[dict, dict]:
  """(start variables: source weights with a fresh head, anchor params: the docs/methods.md §1 reference
  point). Source shapes and (if `check_method`) the method's layer groups are checked on abstract shapes first."""
  source = pretrained.load_source(config.model.pretrained, image_size=config.data.image_size)
  inputs = example_inputs(config, structure)
  init_fn = lambda key: model.init(key, *inputs, train=False)
  key = jax.random.fold_in(jax.random.key(config.run.seed), 0)
  shapes = jax.eval_shape(init_fn, key)
  if source is not None:
    pretrained.check_fits(source.variables, shapes, structure.head_pattern)
  if check_method:
    method_registry.check_method(config, shapes["params"], structure)
  variables = jax.device_get(jax.jit(init_fn)(key))
  if source is not None:
    variables = pretrained.merge_into(variables, source.variables, structure.head_pattern)
  return variables, anchors.anchor_params(variables["params"], config.reg.head_anchor, structure.head_pattern)


def example_inputs(config: ml_collections.ConfigDict, structure: ModelStructure) -> tuple[jax.Array, ...]:
  """Zeros of each input `structure.inputs` names, one example: images float32 [1, image_size, image_size,
  channels]; token arrays int32 [1, EXAMPLE_TOKENS]."""
  image = (1, config.data.image_size, config.data.image_size, config.data.channels)
  return tuple(
    jnp.zeros(image, jnp.float32) if name == "image" else jnp.zeros((1, EXAMPLE_TOKENS), jnp.int32)
    for name in structure.inputs
  )


def noise_transition(noise: ml_collections.ConfigDict, num_classes: int) -> np.ndarray | None:
  """The C×C matrix that `config.noise` asks to corrupt training labels with (docs/methods.md §3.1)."""
  if noise.type == "none":
    return None
  if noise.type == "symmetric":
    return label_noise.symmetric_transition(num_classes, noise.rate, noise.symmetric_mode)
  if noise.type == "pairflip":
    return label_noise.pairflip_transition(num_classes, noise.rate)
  return label_noise.check_transition(noise.matrix, num_classes)  # the one check of config.noise.matrix


VALIDATION_NOISE_STREAM = 1  # a dataset's own validation labels are corrupted with the seed (noise.seed, this)


def with_label_noise(config: ml_collections.ConfigDict, splits: "RunSplits", num_classes: int):
  """`splits` whose training labels are corrupted as `config.noise` says (seeded by `noise.seed`; the test split
  stays clean; a dataset's own validation split is corrupted too, seeded by (`noise.seed`, VALIDATION_NOISE_STREAM),
  unless `data.clean_validation`), and the clean training labels beside them."""
  clean = np.asarray(splits.train.labels)
  transition = noise_transition(config.noise, num_classes)
  if transition is None:
    return splits, LabelNoise(clean, None)
  noisy = label_noise.corrupt_labels(clean, transition, config.noise.seed)
  splits = splits._replace(train=dataclasses.replace(splits.train, labels=noisy))
  if splits.validation is not None and not config.data.clean_validation:
    seed = (config.noise.seed, VALIDATION_NOISE_STREAM)
    labels = label_noise.corrupt_labels(np.asarray(splits.validation.labels), transition, seed)
    splits = splits._replace(validation=dataclasses.replace(splits.validation, labels=labels))
  return splits, LabelNoise(clean, transition)


def check_input_kind(config: ml_collections.ConfigDict, train: data.Source) -> None:
  """A one-line ConfigError unless the dataset holds what the model takes: texts for a text model (one with a token
  format), images for an image model."""
  takes_tokens = model_registry.token_format(config.model.name) is not None
  holds_texts = isinstance(train, data.TextSource)
  dataset, model = config.data.name, config.model.name
  if holds_texts and not takes_tokens:
    raise ConfigError(
      f"dataset {dataset!r} holds texts, but model {model!r} takes images; valid: a text model "
      f"({', '.join(model_registry.text_models())}) with config.data.tokenizer"
    )
  if takes_tokens and not holds_texts:
    raise ConfigError(
      f"dataset {dataset!r} holds images, but model {model!r} takes token ids; valid: a dataset of texts (e.g. "
      "'wordnet_nouns', 'text_files'), or an image model"
    )


def check_every_class_trains(config: ml_collections.ConfigDict, train: data.Source) -> None:
  """A one-line ConfigError unless the training split has two classes or more and examples of each."""
  where = f"dataset {config.data.name!r}" + (f" (data_dir={config.data.dir!r})" if config.data.dir else "")
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
      "split (lower config.data.test_fraction, or add examples)"
    )


class RunSplits(NamedTuple):
  """The splits a run uses: train (without its held-out part), test, and validation (None without one)."""

  train: data.Source
  test: data.Source
  validation: data.Source | None = None


def with_given_labels(config: ml_collections.ConfigDict, splits: data.Splits) -> tuple[data.Splits, np.ndarray]:
  """(`splits` whose training labels are those of `config.data.labels_file` when set, the dataset's own training
  labels)."""
  own = np.asarray(splits.train.labels)
  if not config.data.labels_file:
    return splits, own
  with as_config_error():
    given = labels_file.read_labels_file(config.data.labels_file, splits.train, config.data.dir or None)
  return splits._replace(train=dataclasses.replace(splits.train, labels=given)), own


def with_validation(config: ml_collections.ConfigDict, splits: RunSplits, noise: LabelNoise, stratify_by: np.ndarray):
  """(`splits` with `data.validation_fraction` of the training split per class of `stratify_by` held out as
  validation — its labels those the run trains on, or the clean ones with `data.clean_validation` —, the label
  noise of the kept training examples); `splits` as they are without a fraction (or with the dataset's own
  validation split)."""
  if not config.data.validation_fraction:
    return splits, noise
  kept, held = holdout.stratified_holdout(stratify_by, config.data.validation_fraction)
  if not len(held):
    raise ConfigError(
      f"config.data.validation_fraction={config.data.validation_fraction} holds out no example (no class has two "
      "training examples); valid: 0, or a dataset with two examples or more per class"
    )
  validation = splits.train.take(held)
  if config.data.clean_validation:
    validation = dataclasses.replace(validation, labels=noise.clean_labels[held].astype(np.int32))
  splits = splits._replace(train=splits.train.take(kept), validation=validation)
  return splits, noise._replace(clean_labels=noise.clean_labels[kept])


def load_splits(config: ml_collections.ConfigDict) -> tuple[RunSplits, LabelNoise, int]:
  """(train/test/validation sources fitted to the preprocessing, label noise, class count)."""
  with as_config_error():
    loaded = data.load_dataset(
      config.data.name,
      config.data.dir or None,
      image_size=config.data.image_size,
      test_fraction=config.data.test_fraction,
      examples_per_class=config.data.examples_per_class or None,
      seed=config.run.seed,
      label_key=config.data.label_column,
      splits=tuple(config.data.splits),
      text_keys=tuple(config.data.text_columns),
    )
  check_input_kind(config, loaded.train)
  loaded, own_labels = with_given_labels(config, loaded)
  check_every_class_trains(config, loaded.train)
  _, eval_pp = preprocess_configs(config)
  with as_config_error():
    splits = RunSplits(*(data.fitted_source(split, eval_pp) for split in loaded))
  num_classes = resolve_num_classes(config, splits)
  given = np.asarray(splits.train.labels)
  with as_config_error():
    splits, noise = with_label_noise(config, splits, num_classes)
  noise = noise._replace(clean_labels=own_labels)  # what the labels given (and corrupted) are compared with
  splits, noise = with_validation(config, splits, noise, given)
  if config.optim.batch_size > len(splits.train):
    raise ConfigError(
      f"config.optim.batch_size={config.optim.batch_size} exceeds the {len(splits.train)} training "
      f"examples of {config.data.name!r}; valid: at most {len(splits.train)}"
    )
  return splits, noise, num_classes


class RunSetup(NamedTuple):
  """What a run builds from its config apart from its method, optimiser and train state: all that
  restoring and measuring a finished run needs (`variables` are the start variables, the restore
  target's shapes)."""

  config: ml_collections.ConfigDict
  splits: RunSplits
  label_noise: LabelNoise
  num_classes: int
  model: nn.Module
  variables: dict
  anchor_params: dict
  train_preprocess: data.BatchInputs
  eval_preprocess: data.BatchInputs
  steps_per_epoch: int
  mesh: jax.sharding.Mesh
  structure: ModelStructure


def build_run_setup(config: ml_collections.ConfigDict, check_method: bool = True) -> RunSetup:
  """Validates `config` (resolving `model='auto'`; the setup's config is the resolved one), loads
  data (with its label noise) and weights, and builds the model and its start variables; the
  method's own checks on the model's shapes run when `check_method`, but no method is built."""
  config = checked_config(config)
  mesh = parallel.data_mesh()
  parallel.check_global_batch_size(config.optim.batch_size, mesh)
  splits, noise, num_classes = load_splits(config)
  options = {key: value for key, value in config.model.items() if key not in ("name", "pretrained")}
  with as_config_error():
    model = model_registry.create_model(config.model.name, num_classes, **options)
  structure = model_registry.structure_of(config.model.name)
  with as_config_error():
    variables, anchor = initial_variables(config, model, structure, check_method)
  steps_per_epoch = data.steps_per_epoch(len(splits.train), config.optim.batch_size)
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
        config=method_registry.method_config(config),
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
        batch_size=config.optim.batch_size,
        seed=config.run.seed,
      )
    )
  schedule = optim.learning_rate_schedule(config.optim, steps_per_epoch)
  tx = optax.chain(method.pre_optimizer, optim.make_optimizer(config.optim, schedule), method.post_optimizer)
  state = create_train_state(variables, tx, method.init_state, jax.random.key(config.run.seed))
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
    steps_per_epoch * config.optim.num_epochs,
    mesh,
    state,
    anchor,
    structure,
  )


def compiled_steps(exp: Experiment) -> CompiledSteps:
  """The jitted train, eval and predict steps of `exp` (its mesh, model, method, optimiser and model inputs)."""
  return CompiledSteps(
    exp.mesh,
    model=exp.model,
    method=exp.method,
    tx=exp.tx,
    steps_per_epoch=exp.steps_per_epoch,
    inputs=exp.structure.inputs,
  )
