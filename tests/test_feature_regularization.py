"""docs/methods.md §5 feature regularisation: BSS against numpy's SVD, DELTA's feature term against a numpy
re-statement, its channel zeroing against the stages run by hand and its channel weights on a tiny
ResNet with a dead channel, and both methods in a train step and end to end."""

import functools
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ftjax import data, parallel
from ftjax.config_validation import ConfigError
from ftjax.methods import bss, delta
from ftjax.methods.base import MethodContext
from ftjax.models import create_model, resnet, small_cnn
from ftjax.models.resnet import BasicBlock, ResNet, Stage, Stem
from ftjax.train import loop
from ftjax.train.state import create_train_state
from ftjax.train.steps import CompiledSteps
from tests.test_finetune import tiny_config

WIDTH = 4
DEAD = 5  # the stage2 channel that `_dead_channel` silences


TINY_RESNET = resnet.STRUCTURE._replace(feature_maps=("stage1", "stage2"))  # the structure of `_tiny_resnet`


def _tiny_resnet():
  return ResNet(stage_sizes=(1, 1), bottleneck=False, num_classes=3, width=WIDTH, stem="small")


def _images(n, seed=0):
  return np.random.default_rng(seed).normal(size=(n, 8, 8, 1)).astype(np.float32)


def random_variables(model, image_shape=(1, 8, 8, 1), seed=0):
  """Variables of `model` drawn in numpy, without compiling its init: kernels N(0, 2 / fan_in),
  every bias U(0, 0.3), BatchNorm scales U(0.5, 1.5) (so zero-initialised residual branches carry
  signal), running means 0 and variances 1."""
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(image_shape), train=False))
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = jax.tree_util.keystr(path)
    if name.endswith("['kernel']"):
      return rng.normal(0, np.sqrt(2 / np.prod(leaf.shape[:-1])), leaf.shape).astype(np.float32)
    if name.endswith("['scale']"):
      return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
    if name.endswith("['bias']"):
      return rng.uniform(0, 0.3, leaf.shape).astype(np.float32)
    return np.full(leaf.shape, 1.0 if name.endswith("['var']") else 0.0, np.float32)

  return jax.tree_util.tree_map_with_path(draw, shapes)


@pytest.mark.parametrize("k", [1, 2])
def test_bss_penalty_is_the_sum_of_the_k_smallest_squared_singular_values(k):
  features = np.random.default_rng(k).normal(size=(16, 6)).astype(np.float32)
  expected = np.sum(np.sort(np.linalg.svd(features.astype(np.float64), compute_uv=False))[:k] ** 2)
  np.testing.assert_allclose(bss.batch_spectral_shrinkage(jnp.asarray(features), k), expected, rtol=1e-4)
  grad = jax.grad(bss.batch_spectral_shrinkage)(jnp.asarray(features), k)
  assert np.all(np.isfinite(grad)) and np.any(grad != 0)
  with pytest.raises(ValueError, match="k=7 must be in 1..6"):
    bss.batch_spectral_shrinkage(jnp.asarray(features), 7)


@pytest.mark.parametrize("normalization", delta.NORMALIZATIONS)
def test_delta_feature_distance_matches_a_numpy_restatement(normalization):
  rng = np.random.default_rng(0)
  shapes = {"a": (4, 3, 3, 5), "b": (4, 2, 2, 7)}
  features = {name: rng.normal(size=shape) for name, shape in shapes.items()}
  source = {name: rng.normal(size=shape) for name, shape in shapes.items()}
  weights = {name: rng.dirichlet(np.ones(shape[-1])) for name, shape in shapes.items()}
  expected = 0.0
  for name, (batch, height, width, channels) in shapes.items():
    for b in range(batch):
      for j in range(channels):
        squared = np.sum((features[name][b, :, :, j] - source[name][b, :, :, j]) ** 2)
        if normalization == "paper":
          expected += weights[name][j] * squared / batch
        else:
          expected += 0.5 * channels * weights[name][j] * squared / (height * width)
  as_f32 = lambda tree: jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), tree)
  value = delta.feature_map_distance(as_f32(features), as_f32(source), as_f32(weights), normalization)
  np.testing.assert_allclose(value, expected, rtol=1e-5)


def test_zeroing_a_channel_through_the_interceptor_equals_running_the_stages_by_hand():
  model = _tiny_resnet()
  variables = random_variables(model)
  images = _images(6)
  modules = delta.feature_map_modules(model, variables, images.shape, ["stem", "stage1", "stage2", "penultimate"])
  assert modules == {"stem": ("stem",), "stage1": ("stage1",), "stage2": ("stage2",), "penultimate": None}
  small_cnn = create_model("small_cnn", 3, width=WIDTH)
  small_variables = random_variables(small_cnn)
  assert delta.feature_map_modules(small_cnn, small_variables, images.shape, ["stage1", "stage2"]) == {
    "stage1": None,
    "stage2": None,
  }

  params, stats = variables["params"], variables["batch_stats"]
  sub = lambda name: {"params": params[name], "batch_stats": stats[name]}
  norm = functools.partial(nn.BatchNorm, use_running_average=True, momentum=0.9, epsilon=1e-5)

  @jax.jit
  def by_hand(images, channel_scale):
    stem = Stem(WIDTH, "small", norm).apply(sub("stem"), images)
    stage1 = Stage(BasicBlock, 1, WIDTH, 1, norm).apply(sub("stage1"), stem)
    stage2 = Stage(BasicBlock, 1, 2 * WIDTH, 2, norm).apply(sub("stage2"), stage1 * channel_scale)
    logits = jnp.mean(stage2, axis=(1, 2)) @ params["head"]["kernel"] + params["head"]["bias"]
    return stage1, logits

  stage1, logits = by_hand(images, np.ones(WIDTH, np.float32))
  np.testing.assert_allclose(logits, jax.jit(model.apply)(variables, images), atol=1e-5)
  _, expected = by_hand(images, np.array([1, 1, 0, 1], np.float32))
  zeroed = jax.jit(delta.logits_from_feature_map, static_argnums=(0, 3))(
    model, variables, images, ("stage1",), stage1.at[..., 2].set(0.0)
  )
  np.testing.assert_allclose(zeroed, expected, atol=1e-5)
  assert not np.allclose(expected, logits, atol=1e-3)


def _dead_channel(variables):
  """`variables` with stage2's channel DEAD silenced: its conv and shortcut filters, and the scale
  and bias of both BatchNorms that feed it, are zero, so the stage outputs relu(0) = 0 there."""
  params = jax.tree.map(np.array, variables["params"])
  block = params["stage2"]["block0"]
  block["downsample_conv"]["kernel"][..., DEAD] = 0.0
  block["conv2"]["kernel"][..., DEAD] = 0.0
  for bn in ("bn2", "downsample_bn"):
    block[bn]["scale"][DEAD] = block[bn]["bias"][DEAD] = 0.0
  return {**variables, "params": params}


@pytest.mark.parametrize("normalization", delta.NORMALIZATIONS)
def test_channel_weights_are_a_distribution_that_gives_a_dead_channel_the_least(normalization):
  model = _tiny_resnet()
  variables = _dead_channel(random_variables(model))
  images = _images(32, seed=1)
  _, features = jax.jit(functools.partial(model.apply, return_features=True))(variables, images)
  assert np.all(np.asarray(features["stage2"])[..., DEAD] == 0)
  # Labels every live channel informs: the class of a random projection of the centred penultimate features.
  penultimate = np.asarray(features["penultimate"])
  labels = np.argmax((penultimate - penultimate.mean(0)) @ np.random.default_rng(2).normal(size=(8, 3)), 1)
  mask = np.r_[np.ones(28), np.zeros(4)].astype(np.float32)  # the last batch padded
  batches = [
    {"image": images[i : i + 16], "label": labels[i : i + 16].astype(np.int32), "mask": mask[i : i + 16]}
    for i in (0, 16)
  ]
  weighting = delta.channel_weighting(model, variables, batches, TINY_RESNET, 3, normalization)
  assert weighting.zeroed_modules == {"stage1": "stage1", "stage2": "stage2"}
  assert weighting.probe_accuracy > 0.8
  for name, channels in (("stage1", WIDTH), ("stage2", 2 * WIDTH)):
    weights = weighting.weights[name]
    assert weights.shape == (channels,) and np.all(weights >= 0)
    np.testing.assert_allclose(np.sum(weights), 1.0, rtol=1e-5)
  stage2 = weighting.weights["stage2"]
  assert np.argmin(stage2) == DEAD and stage2[DEAD] < np.sort(stage2)[1]


def test_maps_no_module_returns_get_uniform_weights():
  model = create_model("small_cnn", 3, width=WIDTH)
  variables = random_variables(model)
  batches = [{"image": _images(8), "label": np.zeros(8, np.int32), "mask": np.ones(8, np.float32)}]
  weighting = delta.channel_weighting(model, variables, batches, small_cnn.STRUCTURE, 3)
  assert weighting.zeroed_modules == {"stage1": None, "stage2": None} and weighting.probe_accuracy is None
  np.testing.assert_allclose(weighting.weights["stage2"], np.full(2 * WIDTH, 1 / (2 * WIDTH)))


def _context(config, model, variables, num_examples=48):
  pixels = np.random.default_rng(3).integers(0, 256, size=(num_examples, 8, 8, 1), dtype=np.uint8)
  labels = np.arange(num_examples, dtype=np.int32) % 3
  source = data.ArraySource(pixels, labels, ["a", "b", "c"])
  return MethodContext(
    config=config,
    init_variables=variables,
    anchor_variables={"params": variables["params"]},
    train_labels=labels,
    num_classes=3,
    model=model,
    train_source=source,
    structure=TINY_RESNET,
    train_preprocess=data.Preprocess(image_size=8, channels=1, mean=(0.5,), std=(0.5,)),
  )


@pytest.mark.parametrize("method", ["delta", "bss"])
def test_a_train_step_reduces_the_total_loss_on_a_repeated_batch(method):
  config = tiny_config(method=method, model__name="resnet18", optim__batch_size=16)
  model = _tiny_resnet()
  variables = random_variables(model)
  context = _context(config, model, variables)
  built = delta.delta(context) if method == "delta" else bss.bss(context)
  tx = optax.chain(built.pre_optimizer, optax.sgd(0.02), built.post_optimizer)
  state = create_train_state(variables, tx, built.init_state, jax.random.key(0))
  mesh = parallel.data_mesh(jax.devices()[:1])
  steps = CompiledSteps(mesh, model=model, method=built, tx=tx, steps_per_epoch=10)
  batch = next(data.eval_batches(context.train_source, context.train_preprocess, 16))
  batch = parallel.shard_batch({k: batch[k] for k in ("image", "label", "index")}, mesh)
  state = parallel.replicate(state, mesh)
  losses = []
  for _ in range(4):
    state, metrics = steps.train(state, batch)
    losses.append(float(metrics["loss"]))
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
  if method == "delta":
    assert built.results["zeroed_modules"] == {"stage1": "stage1", "stage2": "stage2"}
    terms = {"feature_distance": config.delta.alpha, "head_l2": config.delta.beta}
  else:
    terms = {"spectral_penalty": config.bss.eta}
  assert all(float(metrics[name]) > 0 for name in terms)
  np.testing.assert_allclose(
    metrics["loss"], metrics["cross_entropy"] + sum(weight * metrics[name] for name, weight in terms.items()), rtol=1e-5
  )


@pytest.mark.parametrize("method", ["delta", "bss"])
def test_end_to_end_run_writes_results(tmp_path, method):
  results = loop.train_and_evaluate(
    tiny_config(method=method, optim__num_epochs=1, data__examples_per_class=20), str(tmp_path)
  )
  with open(os.path.join(tmp_path, "results.json")) as f:
    assert json.load(f)["method"] == method
  assert np.isfinite(results["train_loss"])
  if method == "delta":  # the small CNN's pooled stage outputs are no module's output: uniform weights
    assert results["zeroed_modules"] == {"stage1": None, "stage2": None}
    np.testing.assert_allclose(results["channel_weights"]["stage1"], np.full(WIDTH, 1 / WIDTH))


def test_a_k_beyond_the_feature_matrix_stops_before_training(tmp_path):
  config = tiny_config(method="bss", optim__num_epochs=1)
  config.bss.k = 17  # the small CNN of width 4 has 16 penultimate features
  with pytest.raises(
    ConfigError, match=r"bss.k=17 exceeds min\(optim.batch_size=64, penultimate width 16\); valid: 1..16"
  ):
    loop.train_and_evaluate(config, str(tmp_path))
  assert not os.listdir(tmp_path)
