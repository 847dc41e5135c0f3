"""The ViT family through the whole library: a short fine-tune of a tiny ViT on 8x8 digits for every method (from
the timm fixture, its position embedding resized from a 7x7 to a 2x2 patch grid), the distance constraint's radii
holding for every kernel of every block, Hessian traces against `jax.hessian`, and `model.name='auto'` resolving a
timm and a vit_jax file's architecture."""

import os
import pathlib

import chex
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.configs import default, vit as vit_configs
from ftjax import data, hessian, tree_paths
from ftjax.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from ftjax.models import pretrained, vit, vit_import
from ftjax.train import experiment
from tests import method_runs
from tests.fields import set_fields
from tests.method_runs import run

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
TIMM_FILE = FIXTURES / "vit_timm_cls.safetensors"  # vit_tiny shape for 28x28 RGB inputs, class token
NPZ_FILE = FIXTURES / "vit_jax_gap.npz"  # vit_tiny shape, vit_jax names, global-average pooling
IMAGE_SIZE = 8
NUM_CLASSES = 10


def vit_config(**overrides):
  """1 epoch of AdamW with clipping on 10 digits a class (100 examples, 3 steps of 32), vit_tiny from the timm
  fixture, RGB 8x8 inputs (2x2 patches of 4x4 and a class token)."""
  config = default.get_config()
  set_fields(
    config,
    model__name="vit_tiny",
    model__pretrained=str(TIMM_FILE),
    data__image_size=IMAGE_SIZE,
    data__channels=3,
    data__mean=IMAGENET_MEAN,
    data__std=IMAGENET_STD,
    data__crop_padding=0,
    data__examples_per_class=10,
    optim__name="adamw",
    optim__learning_rate=1e-3,
    optim__weight_decay=1e-4,
    optim__grad_clip_norm=1.0,
    optim__num_epochs=1,
    optim__batch_size=32,
    optim__eval_batch_size=120,
    run__checkpoint_every=100,
    run__log_every=100,
  )
  return set_fields(config, **overrides)


METHODS = {
  **method_runs.METHODS,
  "bfloat16": dict(model__dtype="bfloat16", model__dropout_rate=0.1, model__stochastic_depth_rate=0.1),
}


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_fine_tunes_the_vit(name, tmp_path):
  results = run(vit_config(**METHODS[name]), tmp_path)
  assert results["steps"] == 3 and results["model"] == "vit_tiny"
  for key in ("train_loss", "test_loss", "train_accuracy", "test_accuracy"):
    assert np.isfinite(results[key]), (key, results[key])
  kernels = [name for name in results["layer_distances"] if name.endswith("kernel")]
  assert len(kernels) == 1 + 2 * 6 + 1  # patch embedding, 6 kernels a block, head
  if "radii" in results:  # the constraint, alone or in regsl / consistent: every kernel within its radius
    norm = results["config"]["reg"]["norm"]
    assert set(results["radii"]) == set(kernels)
    for kernel, radius in results["radii"].items():
      assert results["layer_distances"][kernel][norm] <= radius * (1 + 1e-5), (kernel, radius)
    depth_radius = {"embedding": 0.05, "Transformer/encoderblock_0": 0.075, "Transformer/encoderblock_1": 0.1125}
    for kernel, radius in results["radii"].items():
      prefix = next((p for p in depth_radius if kernel.startswith(p)), None)
      assert radius == pytest.approx(depth_radius[prefix] if prefix else 0.5), kernel


def digits_batch(n: int = 32) -> tuple[jax.Array, jax.Array]:
  """n grey 8x8 digits, normalised, and their labels."""
  splits = data.load_dataset("digits", None, image_size=IMAGE_SIZE, test_fraction=0.2, seed=0)
  preprocess = data.Preprocess(image_size=IMAGE_SIZE, channels=1, mean=(0.5,), std=(0.5,))
  batch = next(data.eval_batches(splits.train, preprocess, n))
  return jnp.asarray(batch["image"]), jnp.asarray(batch["label"])


def exact_layer_traces(loss_fn, params) -> dict[str, float]:
  """{leaf path: tr(H_ii)}: the sums of each leaf's part of the diagonal of the full Hessian, from `jax.hessian`."""
  flat, unravel = jax.flatten_util.ravel_pytree(params)
  full = jax.jit(jax.hessian(lambda f: loss_fn(unravel(f))))(flat)
  diagonal = tree_paths.named_leaves(unravel(jnp.diagonal(full)))
  return {name: float(np.sum(np.asarray(d, np.float64))) for name, d in diagonal.items()}


def test_layer_traces_of_a_vit_match_exact_block_traces():
  # A ViT of vit_tiny's form at width 8 (1490 parameters), whose zero-initialised head is replaced by a random one:
  # with a zero head every other block of the Hessian would be zero.
  model = vit.ViT(NUM_CLASSES, width=8, depth=2, mlp_dim=16, num_heads=2, patch_size=4)
  images, labels = digits_batch()
  params = model.init(jax.random.key(0), images)["params"]
  params["head"]["kernel"] = jax.random.normal(jax.random.key(1), params["head"]["kernel"].shape)
  loss_fn = lambda p: jnp.mean(
    optax.softmax_cross_entropy_with_integer_labels(model.apply({"params": p}, images), labels)
  )
  traces = hessian.layer_traces(loss_fn, params, jax.random.key(2), 1000, probes_per_batch=25)
  exact = exact_layer_traces(loss_fn, params)
  kernels = [name for name in exact if name.endswith("kernel")]
  assert sorted(traces) == sorted(kernels) and len(kernels) == 1 + 2 * 6 + 1
  for name in kernels:
    assert abs(traces[name].estimate - exact[name]) <= 3 * traces[name].stderr + 1e-6, (name, traces[name], exact)


@pytest.mark.parametrize(
  "path, pooling, normalization",
  [
    (TIMM_FILE, "cls", dict(mean=IMAGENET_MEAN, std=IMAGENET_STD)),
    (NPZ_FILE, "gap", vit_import.JAX_VIT_NORMALIZATION),
  ],
)
def test_model_auto_takes_the_architecture_of_a_vit_file(path, pooling, normalization):
  config = default.get_config()
  set_fields(config, model__name="auto", model__pretrained=str(path), data__crop_padding=0)
  resolved = experiment.checked_config(config)
  assert resolved.model.name == "vit_tiny" and resolved.model.pooling == pooling
  assert (resolved.data.image_size, resolved.data.channels) == (28, 3)
  assert tuple(resolved.data.mean) == tuple(normalization["mean"])
  assert tuple(resolved.data.std) == tuple(normalization["std"])
  # The model it builds holds the file's backbone and a fresh head.
  setup = experiment.build_run_setup(resolved)
  loaded = vit_import.load_vit(path)["params"]
  chex.assert_trees_all_equal({k: v for k, v in setup.variables["params"].items() if k != "head"}, loaded)
  assert np.all(np.asarray(setup.variables["params"]["head"]["kernel"]) == 0)


def test_a_vit_source_is_fitted_to_the_image_size():
  posemb = vit_import.read_arrays(NPZ_FILE)["Transformer/posembed_input/pos_embedding"]
  source = pretrained.load_source(str(NPZ_FILE), image_size=IMAGE_SIZE)
  resized = source.variables["params"]["Transformer"]["posembed_input"]["pos_embedding"]
  np.testing.assert_array_equal(resized, vit.resize_position_embedding(posemb, 2, has_class_token=False))
  same = pretrained.load_source(str(NPZ_FILE), image_size=31)  # 31 // 4 = 7: the stored grid
  assert same is pretrained.load_source(str(NPZ_FILE))


SHIPPED = "fashion_mnist_vit_tiny"


def test_the_shipped_vit_is_small_described_and_the_tiny_configs_source():
  assert os.path.getsize(os.path.join(pretrained.WEIGHTS_DIR, SHIPPED + ".msgpack")) < 2**20
  info = pretrained.load_source(SHIPPED).info
  config = vit_configs.get_config("tiny")
  assert config.model.pretrained == SHIPPED
  recorded = (info["model"], info["pooling"], info["image_size"], info["channels"], tuple(info["mean"]))
  assert recorded == ("vit_tiny", "cls", 28, 1, (0.5,))
  assert recorded == (config.model.name, config.model.pooling, config.data.image_size, config.data.channels, (0.5,))
  assert info["dataset"] == "fashion_mnist" and "vit.py:pretrain_tiny" in info["command"]
  setup = experiment.build_run_setup(config)
  source = pretrained.load_source(SHIPPED).variables["params"]
  chex.assert_trees_all_equal(
    {k: v for k, v in setup.variables["params"].items() if k != "head"},
    {k: v for k, v in source.items() if k != "head"},
  )


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"), reason="needs dataset-fashion-mnist")
def test_the_shipped_vit_classifies_fashion_mnist():
  source = pretrained.load_source(SHIPPED)
  test = data.load_dataset("fashion_mnist").test.take(np.arange(1000))
  images = data.preprocess(
    test.images(np.arange(1000)), data.Preprocess(image_size=28, channels=1, mean=(0.5,), std=(0.5,))
  )
  logits = jax.jit(vit.ViT(NUM_CLASSES, **vit.VARIANTS["vit_tiny"]).apply)(source.variables, images)
  assert np.mean(np.argmax(logits, -1) == test.labels) > source.info["test_accuracy"] - 0.03
