"""What a model's structure declares for distance regularisation beyond its groups (docs/methods.md §2.1, §2.4):
per-role radii and penalty weights (`roles`, `reg.role_values`) against written-out tables, and the fan-in of
attention kernels (`fan_in`) in the MARS penalty, the constraint and the recorded distances, against numpy views of
the kernels. The model is declared here, with its own parameter names, roles and fan-in."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ftjax import checkpoint_io, configs, layer_groups, models, tree_paths
from ftjax.config_validation import ConfigError
from ftjax.distance import norms, penalty
from ftjax.methods import registry as method_registry
from ftjax.methods.base import MethodContext
from ftjax.models import pretrained, small_cnn, text_encoder, vit
from ftjax.train import loop
from tests.fields import set_fields
from tests.test_finetune import tiny_config

NAME = "test_token_attention"
WIDTH, HEADS, NUM_CLASSES = 4, 2, 10


class TokenAttention(nn.Module):
  """8x8 digits as 8 tokens of 8 pixels -> logits: a token embedding, one residual self-attention layer
  (query/key/value kernels [W, heads, W/heads], out [heads, W/heads, W]), a residual dense feed-forward layer, the
  mean over tokens and a dense classifier; with `return_features`, also {'block': [N, 8, W], 'pooled': [N, W]}."""

  num_classes: int
  width: int = WIDTH

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False):
    del train
    tokens = nn.Dense(self.width, name="embed")(x.reshape(x.shape[0], 8, -1))
    tokens = tokens + nn.MultiHeadDotProductAttention(num_heads=HEADS, name="attention")(tokens, tokens)
    tokens = tokens + nn.Dense(self.width, name="ffn")(nn.gelu(tokens))
    pooled = jnp.mean(tokens, axis=1)
    logits = nn.Dense(self.num_classes, name="classifier")(pooled)
    return (logits, {"block": tokens, "pooled": pooled}) if return_features else logits


STRUCTURE = models.ModelStructure(
  groups=((r"embed/.*", "embed"), (r"attention/.*|ffn/.*", "block"), (r"classifier/.*", "head")),
  head="head",
  feature_maps=("block",),
  penultimate="pooled",
  roles=(
    (r"attention/(query|key|value|out)/kernel", "attention"),
    (r"ffn/kernel", "feedforward"),
    (r"classifier/kernel", "predictor"),
  ),
  fan_in=((r"attention/(query|key|value)/kernel", 1),),
)
ATTENTION = tuple(f"attention/{name}/kernel" for name in ("query", "key", "value", "out"))
KERNELS = ("embed/kernel", *ATTENTION, "ffn/kernel", "classifier/kernel")


def _init(seed: int):
  return jax.device_get(TokenAttention(NUM_CLASSES).init(jax.random.key(seed), jnp.zeros((1, 8, 8, 1))))


def _named(tree) -> dict:
  """{path: leaf as a numpy array} of `tree`."""
  return {name: np.asarray(leaf) for name, leaf in tree_paths.named_leaves(tree).items()}


def _config(method: str, **reg):
  config = configs.default_config()
  set_fields(config, method=method)
  config.reg.update(reg)
  return config


def _built(method: str, **reg):
  """The `Method` that `method` builds for the model with `config.reg` updated by `reg`."""
  config = _config(method, **reg)
  variables = _init(0)
  context = MethodContext(
    method_registry.method_config(config),
    variables,
    variables,
    np.zeros(8, np.int32),
    NUM_CLASSES,
    structure=STRUCTURE,
  )
  return method_registry.build_method(context)


def _table(embed, attention, ffn, classifier):
  return {
    "embed/kernel": embed,
    **dict.fromkeys(ATTENTION, attention),
    "ffn/kernel": ffn,
    "classifier/kernel": classifier,
  }


@pytest.mark.parametrize(
  "method, reg, field, table",
  [
    # Depth schedule (docs/methods.md §2.4): embed D, block D·γ, head D_head; then each role's value, if given.
    ("constraint", dict(radius=0.1, gamma=2.0, head_radius=1.0), "radii", _table(0.1, 0.2, 0.2, 1.0)),
    (
      "constraint",
      dict(radius=0.1, gamma=2.0, head_radius=1.0, role_values=(("attention", 0.5), ("predictor", 3.0))),
      "radii",
      _table(0.1, 0.5, 0.2, 3.0),
    ),
    # A role's value replaces its group's, whether from the schedule or from reg.group_values.
    (
      "regsl",
      dict(radius=0.1, gamma=2.0, head_radius=1.0, group_values=(("block", 0.7),), role_values=(("attention", 0.5),)),
      "radii",
      _table(0.1, 0.5, 0.7, 1.0),
    ),
    (
      "penalty",
      dict(weight=0.01, gamma=2.0, head_weight=0.05, role_values=(("feedforward", 0.3),)),
      "penalty_weights",
      _table(0.01, 0.02, 0.3, 0.05),
    ),
    # L2-SP and L2 take one λ outside the head (no γ).
    (
      "l2sp",
      dict(weight=0.01, gamma=2.0, head_weight=0.05, role_values=(("feedforward", 0.3),)),
      "penalty_weights",
      _table(0.01, 0.01, 0.3, 0.05),
    ),
    (
      "l2",
      dict(weight=0.01, head_weight=0.05, role_values=(("predictor", 0.2),)),
      "penalty_weights",
      _table(0.01, 0.01, 0.01, 0.2),
    ),
  ],
)
def test_role_values_replace_the_schedule_for_their_tensors(method, reg, field, table):
  assert _built(method, **reg).results[field] == pytest.approx(table, rel=1e-12)


def test_roles_cover_only_the_tensors_their_patterns_match():
  roles = layer_groups.assign_roles(_init(0)["params"], STRUCTURE.roles)
  assert roles == {
    **dict.fromkeys(ATTENTION, "attention"),
    "ffn/kernel": "feedforward",
    "classifier/kernel": "predictor",
  }
  assert STRUCTURE.role_names == ("attention", "feedforward", "predictor")


def test_unknown_roles_are_refused_naming_the_models_roles():
  shapes = jax.eval_shape(_init, 0)["params"]
  with pytest.raises(ValueError) as error:
    method_registry.check_method(_config("constraint", role_values=(("mlp", 1.0),)), shapes, STRUCTURE)
  assert str(error.value) == "values given for unknown roles ['mlp']; valid: 'attention', 'feedforward', 'predictor'"
  cnn_shapes = jax.eval_shape(
    lambda: models.create_model("small_cnn", NUM_CLASSES, width=4).init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
  )["params"]
  with pytest.raises(ValueError, match=r"unknown roles \['attention'\]; valid: none \(the model declares no roles\)$"):
    method_registry.check_method(_config("penalty", role_values=(("attention", 1.0),)), cnn_shapes, small_cnn.STRUCTURE)


def test_an_unknown_role_ends_the_run_before_it_starts(tmp_path):
  config = tiny_config(method="constraint", reg__role_values=(("attention", 1.0),))
  with pytest.raises(ConfigError, match=r"unknown roles \['attention'\]"):
    loop.train_and_evaluate(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_a_fan_in_that_does_not_fit_a_kernel_is_refused_on_shapes():
  shapes = jax.eval_shape(_init, 0)["params"]
  misfit = STRUCTURE._replace(fan_in=((r"ffn/kernel", 2),))
  with pytest.raises(ValueError, match="fan_in declares 2 input axes for 'ffn/kernel', which has 2"):
    method_registry.check_method(_config("constraint"), shapes, misfit)


def _mars_by_matrix(t: np.ndarray, name: str) -> float:
  """MARS of t as a (fan_in, out) matrix: attention query/key/value kernels [W, heads, W/heads] as (W, W), every
  other kernel with its last axis as the output units."""
  matrix = t.reshape(t.shape[0], -1) if name in ATTENTION[:3] else t.reshape(-1, t.shape[-1])
  return float(np.abs(matrix.astype(np.float64)).sum(0).max())


def test_mars_penalty_reads_the_declared_fan_in():
  params, anchor = _init(0)["params"], _init(1)["params"]
  weights = {name: 0.5 + i for i, name in enumerate(KERNELS)}
  flat, flat_anchor = _named(params), _named(anchor)
  expected = sum(w * _mars_by_matrix(flat[name] - flat_anchor[name], name) for name, w in weights.items())
  value = penalty.layerwise_penalty(params, anchor, weights, "mars", STRUCTURE.fan_in)
  np.testing.assert_allclose(value, expected, rtol=1e-5)


@pytest.fixture(scope="module")
def registered():
  models.register(NAME, models.ModelFamily(TokenAttention, STRUCTURE))
  yield
  del models.MODELS[NAME]


def test_mars_constraint_on_role_radii_holds_every_kernel_in_its_fan_in_view(registered, tmp_path):
  source = str(tmp_path / "source.msgpack")
  pretrained.save_variables(source, _init(7), {"model": NAME, "width": WIDTH})
  config = configs.default_config()
  set_fields(
    config,
    method="constraint",
    data__name="digits",
    data__image_size=8,
    data__examples_per_class=20,
    model__name=NAME,
    model__width=WIDTH,
    model__pretrained=source,
    optim__num_epochs=1,
    optim__learning_rate=0.5,
    run__checkpoint_every=100,
    run__log_every=100,
  )
  config.reg.update(
    norm="mars", radius=0.02, gamma=2.0, head_radius=0.3, role_values=(("attention", 0.05), ("feedforward", 0.01))
  )
  workdir = str(tmp_path / "run")
  results = loop.train_and_evaluate(config, workdir)
  radii = _table(0.02, 0.05, 0.01, 0.3)
  assert results["radii"] == pytest.approx(radii, rel=1e-12)
  final = _named(checkpoint_io.restore_model(f"{workdir}/checkpoints")[0]["params"])
  anchor = _named(_init(7)["params"])  # the source outside the head, zero for the head (docs/methods.md §1)
  anchor["classifier/kernel"] = np.zeros_like(anchor["classifier/kernel"])
  distances = {name: _mars_by_matrix(final[name] - anchor[name], name) for name in KERNELS}
  for name in KERNELS:
    np.testing.assert_allclose(results["layer_distances"][name]["mars"], distances[name], rtol=1e-5)
    assert distances[name] <= radii[name] * (1 + 1e-5), (name, distances[name], radii[name])
  assert all(distances[name] > 0.99 * radii[name] for name in ATTENTION)  # the constraint binds


def _param_shapes(module, *inputs) -> dict:
  """{path: shape struct} of `module`'s params, from abstract shapes only."""
  return tree_paths.named_leaves(jax.eval_shape(lambda: module.init(jax.random.key(0), *inputs))["params"])


def test_vit_declares_its_roles_and_one_input_axis_for_query_key_value_kernels():
  constructor, structure = vit.vit_family("vit_tiny")
  shapes = _param_shapes(constructor(num_classes=3), jnp.zeros((1, 28, 28, 1)))
  attention = "Transformer/encoderblock_{}/MultiHeadDotProductAttention_1/{}/kernel"
  expected_roles = {
    **{attention.format(i, p): "attention" for i in (0, 1) for p in ("query", "key", "value", "out")},
    **{f"Transformer/encoderblock_{i}/MlpBlock_3/Dense_{j}/kernel": "mlp" for i in (0, 1) for j in (0, 1)},
  }
  assert layer_groups.assign_roles(shapes, structure.roles) == expected_roles
  axes = norms.layer_input_axes(shapes, structure.fan_in)
  for i in (0, 1):
    for p in ("query", "key", "value"):
      assert shapes[attention.format(i, p)].shape == (32, 2, 16) and axes[attention.format(i, p)] == 1
    assert shapes[attention.format(i, "out")].shape == (2, 16, 32) and axes[attention.format(i, "out")] == 2
  assert axes["embedding/kernel"] == 3 and axes["head/kernel"] == 1


@pytest.mark.parametrize("name", ["bert_tiny", "roberta_tiny"])
def test_text_encoders_declare_their_roles_on_dense_kernels(name):
  constructor, structure = text_encoder.text_family(name)
  tokens = jnp.ones((1, 4), jnp.int32)
  shapes = _param_shapes(constructor(num_classes=3), tokens, tokens)
  layers = {
    **{f"layer{i}/attention/{p}/kernel": "attention" for i in (0, 1) for p in ("query", "key", "value", "output")},
    **{f"layer{i}/{p}/kernel": "feedforward" for i in (0, 1) for p in ("intermediate", "output")},
  }
  head = {"pooler/kernel": "feedforward", "head/out_proj/kernel": "predictor"}
  if name == "roberta_tiny":
    head = {"head/dense/kernel": "predictor", "head/out_proj/kernel": "predictor"}
  assert layer_groups.assign_roles(shapes, structure.roles) == {**layers, **head}
  # Flax Dense kernels [in, out]: all but the last axis are inputs, with nothing declared.
  assert structure.fan_in == () and all(shapes[path].ndim == 2 for path in layers)
