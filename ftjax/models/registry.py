"""Model families by name: `create_model(name, num_classes, **options)` and `structure_of(name)`.

A family is its Flax module's constructor, the `ModelStructure` it declares and the options (config fields of the
`model` section) its constructor takes; `register` adds one (the config's `model.name` then accepts its name).
The ResNets take width, stem and dtype; each ViT variant (`vit.VARIANTS`: its shape fixed) takes pooling,
dropout_rate, stochastic_depth_rate and dtype; each BERT / RoBERTa encoder (`text_encoder.ARCHITECTURES`: its sizes
fixed) takes dropout_rate and vocab_size, and declares the token inputs it takes (`token_format`).
"""

import functools
from typing import Callable, NamedTuple

import flax.linen as nn

from ftjax.models import resnet, small_cnn, text_encoder, vit
from ftjax.models.resnet import STEMS, ResNet
from ftjax.models.small_cnn import SmallCNN
from ftjax.models.structure import ModelStructure

# An option that a family does not take may be passed at this value, which changes nothing (a config's `model`
# section holds every family's options); any other value is refused.
NEUTRAL_OPTIONS = {"dtype": "float32", "dropout_rate": 0.0, "stochastic_depth_rate": 0.0, "vocab_size": 0}
VIT_OPTIONS = ("pooling", "dropout_rate", "stochastic_depth_rate", "dtype")
TEXT_OPTIONS = ("dropout_rate", "vocab_size")


class TokenFormat(NamedTuple):
  """The token inputs a text family takes: ids below `vocab_size`, pads of id `pad_id`, at most `max_length` tokens
  per example (special tokens included)."""

  vocab_size: int
  pad_id: int
  max_length: int


class ModelFamily(NamedTuple):
  """module: `module(num_classes=..., **options)` -> a Flax module; structure: its `ModelStructure`;
  options: the constructor arguments beyond `num_classes` that `create_model` passes on (config fields);
  token_format: for a family that takes token ids, what they must be (its vocab_size before the `vocab_size`
  option replaces it); None for image models."""

  module: Callable[..., nn.Module]
  structure: ModelStructure
  options: tuple[str, ...] = ("width",)
  token_format: TokenFormat | None = None


def _resnet(stage_sizes: tuple[int, ...], bottleneck: bool) -> ModelFamily:
  return ModelFamily(
    functools.partial(ResNet, stage_sizes=stage_sizes, bottleneck=bottleneck),
    resnet.STRUCTURE,
    options=("width", "stem", "dtype"),
  )


def _vit(variant: str) -> ModelFamily:
  module, structure = vit.vit_family(variant)
  return ModelFamily(module, structure, options=VIT_OPTIONS)


def text_encoder_module(
  num_classes: int, architecture: text_encoder.TextArchitecture, dropout_rate: float = 0.1, vocab_size: int = 0
) -> text_encoder.TextEncoder:
  """The encoder of `architecture`, its word embedding `vocab_size` rows (0: the architecture's own)."""
  if vocab_size:
    architecture = architecture._replace(vocab_size=vocab_size)
  return text_encoder.TextEncoder(architecture, num_classes, dropout_rate)


def _text(name: str) -> ModelFamily:
  architecture = text_encoder.ARCHITECTURES[name]
  _, structure = text_encoder.text_family(architecture)
  return ModelFamily(
    functools.partial(text_encoder_module, architecture=architecture),
    structure,
    options=TEXT_OPTIONS,
    token_format=TokenFormat(architecture.vocab_size, architecture.pad_token_id, architecture.max_length),
  )


MODELS: dict[str, ModelFamily] = {
  "resnet18": _resnet((2, 2, 2, 2), bottleneck=False),
  "resnet34": _resnet((3, 4, 6, 3), bottleneck=False),
  "resnet50": _resnet((3, 4, 6, 3), bottleneck=True),
  "resnet101": _resnet((3, 4, 23, 3), bottleneck=True),
  "small_cnn": ModelFamily(SmallCNN, small_cnn.STRUCTURE),
  **{variant: _vit(variant) for variant in vit.VARIANTS},
  **{name: _text(name) for name in text_encoder.ARCHITECTURES},
}


def register(name: str, family: ModelFamily) -> None:
  """Adds (or replaces) the family `name`: `create_model`, `structure_of` and the config's `model` field accept it."""
  if not isinstance(family, ModelFamily):
    raise TypeError(f"register({name!r}, ...) needs a ModelFamily; got {type(family).__name__}")
  MODELS[name] = family


def check_model_name(name: str) -> None:
  if name not in MODELS:
    raise ValueError(f"model={name!r} is not a known model; valid: {', '.join(sorted(MODELS))}")


def family_of(name: str) -> ModelFamily:
  """The registered family `name`; a one-line error for an unknown name."""
  check_model_name(name)
  return MODELS[name]


def structure_of(name: str) -> ModelStructure:
  """The `ModelStructure` of the registered family `name`."""
  return family_of(name).structure


def token_format(name: str, vocab_size: int = 0) -> TokenFormat | None:
  """The token inputs the family `name` takes with the `vocab_size` option (0: its own); None for an image model."""
  found = family_of(name).token_format
  return found._replace(vocab_size=vocab_size) if found is not None and vocab_size else found


def text_models() -> tuple[str, ...]:
  """The registered families that take token ids."""
  return tuple(name for name, family in MODELS.items() if family.token_format is not None)


def create_model(name: str, num_classes: int, **options) -> nn.Module:
  """The Flax module `name` with a fresh `num_classes`-way head, built with those of `options` that its family
  lists (e.g. width: the ResNet's first-stage channels; stem: one of STEMS; pooling, stochastic_depth_rate: the
  ViT's; dropout_rate: the ViT's and text encoders'; dtype: the compute dtype; vocab_size: a text encoder's word
  embedding rows, 0 = its architecture's). The others are dropped, unless set to a value other than their
  `NEUTRAL_OPTIONS` one: a one-line error."""
  family = family_of(name)
  check_options(name, options)
  taken = {option: value for option, value in options.items() if option in family.options and value is not None}
  return family.module(num_classes=num_classes, **taken)


def check_options(name: str, options: dict) -> None:
  """A one-line error for an option of `options` that the family `name` does not take, set to another value than
  its `NEUTRAL_OPTIONS` one (e.g. dtype='bfloat16' for a model that computes in float32 only), or for an unknown
  stem."""
  family = family_of(name)
  for option, value in options.items():
    if option not in family.options and option in NEUTRAL_OPTIONS and value != NEUTRAL_OPTIONS[option]:
      raise ValueError(
        f"model {name!r} takes no option {option}={value!r} (its options: {', '.join(family.options)}); "
        f"valid: {NEUTRAL_OPTIONS[option]!r}"
      )
  if "stem" in family.options and options.get("stem", STEMS[0]) not in STEMS:
    raise ValueError(f"stem={options['stem']!r} is not a known stem; valid: {', '.join(STEMS)}")
