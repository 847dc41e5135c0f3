"""The config schema: the default config it builds, the validation it derives, its help text and
the generated reference docs/config.md."""

import importlib
import os
import re

import ml_collections
import pytest

from ftjax import configs
from ftjax.config_validation import ConfigError, check_fields
from ftjax.configs import help_text, reference, schema

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED_CONFIGS = [
  ("default", None),
  ("pretrain", None),
  ("torchvision", None),
  ("torchvision", "resnet18"),
  ("vit", None),
  ("vit", "tiny"),
  ("vit", "pretrain_tiny"),
  ("sweep_distance", None),
  ("sweep_noisy_digits", None),
  ("sweep_noisy_digits", "ablation"),
  ("sweep_vit_tiny", None),
  ("text", None),
  ("text", "wordnet"),
  ("text", "pretrain_wordnet"),
  ("sweep_noisy_digits", "settings"),
  ("sweep_noisy_digits", "full"),
  ("sweep_noisy_digits", "tuned"),
  ("sweep_noisy_digits", "tuned_full"),
]
FIELD_LINE = re.compile(r"^  (\S+) {2,}(.*?)(?: {2,}(.*))?$")


def lookup(config, name):
  for part in name.split("."):
    config = config[part]
  return config


def parse_help(lines):
  """{field name: (value text, meaning text)} of the field lines of a help text."""
  fields = {}
  for line in lines:
    match = FIELD_LINE.match(line)
    if match:
      fields[match.group(1)] = (match.group(2), match.group(3) or "")
  return fields


def test_default_config_holds_every_run_field_at_its_default_and_nothing_else():
  config = configs.default_config()
  run_fields = [f for s in configs.SECTIONS if not s.optional for f in s.fields]
  for field in run_fields:
    value = lookup(config, field.name)
    assert value == field.default and type(value) is type(field.default), field.name
  flat = {}

  def walk(node, prefix=""):
    for key, value in node.items():
      if isinstance(value, ml_collections.ConfigDict):
        walk(value, f"{prefix}{key}.")
      else:
        flat[prefix + key] = value

  walk(config)
  assert sorted(flat) == sorted(f.name for f in run_fields)
  assert "sweep" not in config and config.run.eval_every == 1


def test_every_default_passes_its_own_check():
  for field in configs.fields():
    if field.check is not None:
      assert field.check.is_valid(field.default), field.name


def has(config, name):
  *parents, leaf = name.split(".")
  for part in parents:
    if part not in config:
      return False
    config = config[part]
  return leaf in config


@pytest.mark.parametrize("module, arg", SHIPPED_CONFIGS)
def test_every_shipped_config_keeps_the_layout_and_passes_the_field_checks(module, arg):
  config = importlib.import_module(f"experiments.configs.{module}").get_config(arg)
  check_fields(config, configs.field_checks())
  for section in configs.SECTIONS:
    if section.optional and not any(has(config, f.name) for f in section.fields):
      continue
    for field in section.fields:
      assert has(config, field.name) or (section.optional and field.default is not schema.REQUIRED), field.name


def bad(**overrides):
  config = configs.default_config()
  for name, value in overrides.items():
    *parents, leaf = name.split("__")
    node = config
    for part in parents:
      node = node[part]
    with node.ignore_type():
      node[leaf] = value
  return config


@pytest.mark.parametrize(
  "overrides, message",
  [
    (
      dict(data__name="cifar7"),
      "config.data.name='cifar7' is not a known dataset; valid: digits, fashion_mnist, mnist, "
      "image_folder, wordnet_nouns, wordnet_verbs, text_files or 'tfds:NAME'",
    ),
    (dict(data__channels=2), "config.data.channels=2 is invalid; valid: one of 1, 3"),
    (dict(optim__name="rmsprop"), "config.optim.name='rmsprop' is invalid; valid: one of 'sgd', 'adam', 'adamw'"),
    (dict(noise__rate=1.0), "config.noise.rate=1.0 is invalid; valid: a number in [0.0, 1.0)"),
    (dict(optim__num_epochs=0), "config.optim.num_epochs=0 is invalid; valid: an integer in [1, 2147483647]"),
    (dict(run__seed=2**31), "config.run.seed=2147483648 is invalid; valid: an integer in [0, 2147483647]"),
    (
      dict(optim__learning_rate=float("inf")),
      "config.optim.learning_rate=inf is invalid; valid: a number in (0.0, inf)",
    ),
    (dict(optim__weight_decay=float("nan")), "config.optim.weight_decay=nan is invalid; valid: a number in [0.0, inf)"),
    (dict(reg__weight=float("inf")), "config.reg.weight=inf is invalid; valid: a number in [0.0, inf)"),
    (dict(data__mean=(float("nan"),)), "config.data.mean=(nan,) is invalid; valid: a tuple of numbers each >= 0.0"),
    (dict(data__image_size=4097), "config.data.image_size=4097 is invalid; valid: an integer in [1, 4096]"),
    (dict(data__crop_padding=28), "config.data.crop_padding=28 is invalid; valid: an integer below image_size=28"),
    (
      dict(optim__lr_decay_epochs=(5.0, 21.0)),
      "config.optim.lr_decay_epochs=(5.0, 21.0) holds 21.0, past the last epoch; valid: epochs <= num_epochs=20",
    ),
    (
      dict(reg__groups=(("stage1/.*", "early"), ("stage(2", "late"))),
      "config.reg.groups holds 'stage(2', which is no regular expression (missing ), unterminated subpattern at "
      "position 5); valid: a Python regex over parameter paths such as 'stage1/.*'",
    ),
    (
      dict(reg__group_values=(("stage1", float("inf")),)),
      "config.reg.group_values=(('stage1', inf),) is invalid; valid: a tuple of (str, float) pairs with values >= 0",
    ),
    (dict(data__flip="yes"), "config.data.flip='yes' is invalid; valid: True or False"),
    (
      dict(reg__groups=("stage1=early",)),
      "config.reg.groups=('stage1=early',) is invalid; valid: a tuple of (str, str) pairs",
    ),
    (
      dict(reg__group_values=(("stage1", -1.0),)),
      "config.reg.group_values=(('stage1', -1.0),) is invalid; valid: a tuple of (str, float) pairs with values >= 0",
    ),
    (dict(reg__radius=-0.5), "config.reg.radius=-0.5 is invalid; valid: a number in [0.0, inf)"),
    (
      dict(method="sam"),
      "config.method='sam' is invalid; valid: one of 'none', 'l2', 'l2sp', 'penalty', "
      "'constraint', 'regsl', 'consistent', 'delta', 'bss', 'label_smoothing'",
    ),
    (
      dict(data__std=(0.5, 0.5)),
      "config.data.std=(0.5, 0.5) is invalid; valid: 1 values, one per channel (config.data.channels=1)",
    ),
    (dict(optim__warmup_epochs=20.0), "config.optim.warmup_epochs=20.0 must be below num_epochs=20"),
    (
      dict(method="consistent", consistent__transition="true"),
      "config.consistent.transition='true' needs synthetic noise (config.noise.type != 'none'); valid: 'estimate' "
      "or a .json/.npy matrix",
    ),
  ],
)
def test_validation_refuses_a_bad_value_with_one_line(overrides, message):
  with pytest.raises(ConfigError) as error:
    configs.validate_config(bad(**overrides))
  assert str(error.value) == message


def test_validation_names_a_missing_field():
  config = configs.default_config()
  del config.consistent["estimator"]
  with pytest.raises(ConfigError) as error:
    configs.validate_config(config)
  assert str(error.value) == "config.consistent.estimator is missing; expected one of 'dual_t', 'anchor'"


def test_help_lists_every_field_with_its_value_meaning_and_choices():
  config = configs.default_config()
  config.optim.learning_rate = 0.5
  lines = configs.help_lines(config)
  fields = parse_help(lines)
  run_fields = [f for s in configs.SECTIONS if not s.optional for f in s.fields]
  assert list(fields) == [f.name for f in run_fields]  # the optional sweep section only where a config has it
  for field in run_fields:
    value, meaning = fields[field.name]
    assert value == repr(lookup(config, field.name)) and meaning.startswith(field.help), field.name
  assert fields["optim.learning_rate"][0] == "0.5"
  for choice in ("'none'", "'symmetric'", "'pairflip'", "'matrix'"):
    assert choice in fields["noise.type"][1]
  titles = [line.split(":")[0] for line in lines if not line.startswith(" ")]
  assert titles == [s.title for s in configs.SECTIONS if not s.optional]


def test_help_shows_a_sweep_section_unset_fields_and_fields_the_schema_lacks():
  config = configs.default_config()
  config.sweep = ml_collections.ConfigDict(
    dict(variants={"plain": ("method=none",)}, datasets=("digits",), noise=("none",), seeds=(0, 1))
  )
  config.extra_field = 3
  fields = parse_help(configs.help_lines(config))
  assert fields["sweep.variants"][0] == "{'plain': ('method=none',)}" and fields["sweep.seeds"][0] == "(0, 1)"
  assert fields["sweep.only"][0] == help_text.ABSENT
  assert fields["extra_field"] == ("3", "")


def test_a_long_dict_value_shows_its_keys():
  variants = {f"variant{i}": ("method=none", "reg.radius=1.0") for i in range(4)}
  assert help_text.shown_value(variants) == "{" + ", ".join(f"'variant{i}': ..." for i in range(4)) + "}"
  assert help_text.shown_value({"a": 1}) == "{'a': 1}"


def test_committed_reference_is_the_generated_one():
  with open(os.path.join(REPO, "docs", "config.md")) as f:
    committed = f.read()
  assert committed == reference.reference_markdown(), "regenerate: python -m ftjax.configs.reference > docs/config.md"
  for field in configs.fields():
    assert f"| `{field.name}` | `{field.default!r}` |" in committed, field.name
  assert [line[3:] for line in committed.splitlines() if line.startswith("## ")] == [s.title for s in schema.SECTIONS]


def test_a_batch_larger_than_memory_is_refused_naming_the_largest_that_fits():
  config = bad(optim__batch_size=1000)  # 1000 28x28x1 float32 images: 3,136,000 bytes
  configs.validation.check_batch_memory(config, memory=3_136_000)  # fits exactly
  with pytest.raises(ConfigError) as error:
    configs.validation.check_batch_memory(config, memory=3_135_999)
  assert str(error.value) == (
    "config.optim.batch_size=1000 needs 0.0 GiB for one batch of 28x28x1 float32 inputs, more than this machine's "
    "0.0 GiB of memory; valid: at most 999"
  )
  huge = bad(optim__eval_batch_size=2**31 - 1, data__image_size=4096, data__channels=3, data__mean=(0.5,) * 3)
  huge.data.std = (0.5,) * 3
  with pytest.raises(ConfigError, match=r"^config.optim.eval_batch_size=2147483647 needs .* valid: at most \d+$"):
    configs.validate_config(huge)
