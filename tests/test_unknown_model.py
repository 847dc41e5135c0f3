"""A model the library has never seen, declared here with its own parameter names and structure, runs the
distance constraint, regsl, the consistent loss, DELTA and the Hessian measures through the public API
(`ftjax.models.register`, `train_and_evaluate`, `ftjax.hessian`, `ftjax.generalization`); nothing in the
library is edited or patched."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ftjax import configs, data, generalization, hessian, models, tree_paths
from ftjax.models import pretrained
from ftjax.train import experiment
from tests.fields import set_fields
from tests.method_runs import run

NAME = "test_digit_mlp"
WIDTH = 6
NUM_CLASSES = 10


class Encoder(nn.Module):
  """flat inputs [batch, 64] -> (fc_in's output, fc_mid's output), each [batch, width]."""

  width: int

  @nn.compact
  def __call__(self, x):
    code_in = nn.Dense(self.width, name="fc_in")(x)
    code_mid = nn.Dense(self.width, name="fc_mid")(nn.tanh(code_in))
    return code_in, code_mid


class DigitMLP(nn.Module):
  """8x8 digits -> logits through a two-layer tanh encoder and a dense classifier; with `return_features`,
  also {'code_in', 'code_mid', 'code'} (the last is what the classifier reads)."""

  num_classes: int
  width: int = WIDTH

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False):
    del train
    code_in, code_mid = Encoder(self.width, name="encoder")(x.reshape(x.shape[0], -1))
    code = nn.tanh(code_mid)
    logits = nn.Dense(self.num_classes, name="classifier")(code)
    features = {"code_in": code_in, "code_mid": code_mid, "code": code}
    return (logits, features) if return_features else logits


STRUCTURE = models.ModelStructure(
  groups=((r"encoder/fc_in/.*", "input"), (r"encoder/fc_mid/.*", "middle"), (r"classifier/.*", "output")),
  head="output",
  feature_maps=("code_in", "code_mid"),
  penultimate="code",
)
KERNELS = ("encoder/fc_in/kernel", "encoder/fc_mid/kernel", "classifier/kernel")


@pytest.fixture(scope="module")
def registered():
  models.register(NAME, models.ModelFamily(DigitMLP, STRUCTURE))
  yield
  del models.MODELS[NAME]


@pytest.fixture(scope="module")
def source(registered, tmp_path_factory):
  """A .msgpack source model of the MLP (its own init with another seed) and its variables."""
  path = str(tmp_path_factory.mktemp("source") / "mlp.msgpack")
  variables = jax.device_get(DigitMLP(NUM_CLASSES).init(jax.random.key(7), jnp.zeros((1, 8, 8, 1))))
  pretrained.save_variables(path, variables, {"model": NAME, "width": WIDTH})
  return path, variables


def mlp_config(source_path, **overrides):
  config = configs.default_config()
  set_fields(
    config,
    data__name="digits",
    model__name=NAME,
    model__width=WIDTH,
    model__pretrained=source_path,
    data__image_size=8,
    data__examples_per_class=30,
    optim__num_epochs=2,
    optim__batch_size=64,
    optim__eval_batch_size=128,
    optim__learning_rate=0.1,
    run__checkpoint_every=100,
    run__log_every=100,
  )
  return set_fields(config, **overrides)


def within_radii(results, radii):
  distances = {name: results["layer_distances"][name]["frobenius"] for name in KERNELS}
  assert all(distances[name] <= radii[name] * (1 + 1e-5) for name in KERNELS), (distances, radii)
  return distances


def test_start_variables_take_the_encoder_from_the_source_and_a_zero_anchor_head(source):
  path, variables = source
  exp = experiment.build_experiment(mlp_config(path))
  params = jax.device_get(exp.initial_state.params)
  for layer in ("fc_in", "fc_mid"):
    np.testing.assert_array_equal(params["encoder"][layer]["kernel"], variables["params"]["encoder"][layer]["kernel"])
  assert not np.allclose(params["classifier"]["kernel"], variables["params"]["classifier"]["kernel"])
  assert np.all(np.asarray(exp.anchor_params["classifier"]["kernel"]) == 0)
  np.testing.assert_array_equal(
    exp.anchor_params["encoder"]["fc_mid"]["kernel"], variables["params"]["encoder"]["fc_mid"]["kernel"]
  )


def test_constraint_keeps_every_kernel_within_its_radius_on_the_depth_schedule(source, tmp_path):
  config = mlp_config(source[0], method="constraint", reg__radius=0.05, reg__gamma=2.0, reg__head_radius=0.3)
  results = run(config, tmp_path)
  # The schedule walks the declared groups input, middle (D, D·γ) and gives the head group its own radius.
  radii = {"encoder/fc_in/kernel": 0.05, "encoder/fc_mid/kernel": 0.1, "classifier/kernel": 0.3}
  assert results["radii"] == pytest.approx(radii)
  distances = within_radii(results, radii)
  assert any(distances[name] > 0.99 * radii[name] for name in KERNELS)  # the constraint binds


def test_groups_given_as_regex_group_pairs_replace_the_declared_ones(source, tmp_path):
  groups = (("encoder/.*", "body"), ("classifier/.*", "output"))
  config = mlp_config(
    source[0],
    method="constraint",
    optim__num_epochs=1,
    reg__radius=0.02,
    reg__head_radius=0.3,
    reg__groups=groups,
    reg__group_values=(("body", 0.04),),
  )
  results = run(config, tmp_path)
  assert results["radii"] == pytest.approx(
    {"encoder/fc_in/kernel": 0.04, "encoder/fc_mid/kernel": 0.04, "classifier/kernel": 0.3}
  )


def test_regsl_corrects_labels_under_the_constraint(source, tmp_path):
  config = mlp_config(
    source[0],
    method="regsl",
    optim__num_epochs=3,
    noise__type="symmetric",
    noise__rate=0.4,
    reg__radius=0.5,
    reg__head_radius=2.0,
    correction__start_epoch=1,
    correction__threshold=0.5,
    reweighting__start_epoch=1,
  )
  results = run(config, tmp_path)
  assert np.isfinite(results["train_loss"])
  within_radii(results, results["radii"])
  assert set(results["radii"]) == set(KERNELS)


def test_consistent_uses_the_true_transition_matrix(source, tmp_path):
  rate = 0.4
  config = mlp_config(
    source[0],
    method="consistent",
    noise__type="symmetric",
    noise__rate=rate,
    consistent__transition="true",
    reg__radius=0.5,
    reg__head_radius=2.0,
  )
  results = run(config, tmp_path)
  # Symmetric noise to another class: 1 - η on the diagonal, η / (C - 1) elsewhere.
  expected = np.full((NUM_CLASSES, NUM_CLASSES), rate / (NUM_CLASSES - 1)) + np.eye(NUM_CLASSES) * (
    1 - rate - rate / (NUM_CLASSES - 1)
  )
  np.testing.assert_allclose(results["transition_matrix"], expected, atol=1e-12)
  assert results["transition_max_abs_error"] == 0.0
  within_radii(results, results["radii"])


def test_delta_weights_the_declared_feature_maps_by_zeroing_the_layers_that_return_them(source, tmp_path):
  results = run(mlp_config(source[0], method="delta", optim__num_epochs=1), tmp_path)
  assert results["zeroed_modules"] == {"code_in": "encoder/fc_in", "code_mid": "encoder/fc_mid"}
  for name in STRUCTURE.feature_maps:
    weights = np.asarray(results["channel_weights"][name])
    assert weights.shape == (WIDTH,) and np.all(weights > 0)
    np.testing.assert_allclose(weights.sum(), 1.0, rtol=1e-5)
  assert 0.0 < results["probe_accuracy"] <= 1.0 and np.isfinite(results["train_loss"])


def _digits_batch(n=96):
  splits = data.load_dataset("digits", None, image_size=8, test_fraction=0.2, examples_per_class=None, seed=0)
  preprocess = data.Preprocess(image_size=8, channels=1, mean=(0.5,), std=(0.5,))
  batch = next(data.eval_batches(splits.train, preprocess, n))
  return jnp.asarray(batch["image"]), jnp.asarray(batch["label"])


def _exact_block(loss_fn, params, name):
  """The layer's diagonal Hessian block [d, d] by `jax.hessian` of the loss in that leaf alone."""
  leaf = tree_paths.named_leaves(params)[name]

  def in_leaf(flat):
    return loss_fn(tree_paths.map_with_names(lambda n, x: flat.reshape(leaf.shape) if n == name else x, params))

  return np.asarray(jax.hessian(in_leaf)(leaf.ravel()), np.float64)


def test_hessian_measures_of_the_unknown_model_match_exact_blocks(registered):
  model = models.create_model(NAME, NUM_CLASSES, width=WIDTH)
  images, labels = _digits_batch()
  params = model.init(jax.random.key(0), images)["params"]
  anchor = model.init(jax.random.key(1), images)["params"]
  loss_fn = lambda p: jnp.mean(
    optax.softmax_cross_entropy_with_integer_labels(model.apply({"params": p}, images), labels)
  )
  blocks = {name: _exact_block(loss_fn, params, name) for name in KERNELS}

  traces = hessian.layer_traces(loss_fn, params, jax.random.key(2), 300)
  assert set(traces) == set(KERNELS)
  for name in KERNELS:
    exact = np.trace(blocks[name])
    assert abs(traces[name].estimate - exact) <= 3 * traces[name].stderr + 1e-6, (name, traces[name], exact)

  # v_i^T H_ii^+ v_i with v_i = W_i - W_i^(s): Lanczos run to the block's full dimension is exact.
  forms = generalization.positive_part_quadratic_forms(
    loss_fn, params, anchor, num_steps=max(b.shape[0] for b in blocks.values())
  )
  exact_forms = {}
  for name in KERNELS:
    v = np.asarray(tree_paths.named_leaves(params)[name] - tree_paths.named_leaves(anchor)[name], np.float64).ravel()
    eigenvalues, vectors = np.linalg.eigh(blocks[name])
    exact_forms[name] = float(np.sum(np.maximum(eigenvalues, 0) * (vectors.T @ v) ** 2))
    np.testing.assert_allclose(forms[name], exact_forms[name], rtol=2e-3, atol=1e-6)
  max_loss, num_train = 3.0, 1437
  expected_bound = sum(np.sqrt(max_loss * q / num_train) for q in exact_forms.values())
  np.testing.assert_allclose(generalization.hessian_bound(forms, max_loss, num_train), expected_bound, rtol=2e-3)
