"""The source model shipped in the package: small, fits the default config, and classifies Fashion-MNIST."""

import os

import chex
import jax
import numpy as np
import pytest

from experiments.configs import default
from ftjax import data
from ftjax.models import create_model, pretrained, structure_of
from ftjax.train import experiment

NAME = "fashion_mnist_resnet18"


def test_shipped_model_is_small_and_described():
  assert NAME in pretrained.shipped_models()
  assert os.path.getsize(os.path.join(pretrained.WEIGHTS_DIR, NAME + ".msgpack")) < 5 * 2**20
  info = pretrained.load_source(NAME).info
  config = default.get_config()
  assert (info["model"], info["width"], info["stem"], info["image_size"], info["channels"]) == (
    config.model.name,
    config.model.width,
    config.model.stem,
    config.data.image_size,
    config.data.channels,
  )
  assert info["dataset"] == "fashion_mnist" and info["command"].startswith("python -m experiments.pretrain")


def test_default_config_starts_from_the_shipped_backbone_with_a_fresh_head():
  config = default.get_config()
  model = create_model(config.model.name, 10, width=config.model.width, stem=config.model.stem)
  variables, anchor = experiment.initial_variables(config, model, structure_of(config.model.name))
  source = pretrained.load_source(NAME).variables
  chex.assert_trees_all_equal(variables["params"]["stage3"], source["params"]["stage3"])
  chex.assert_trees_all_equal(variables["batch_stats"], source["batch_stats"])
  assert not np.allclose(variables["params"]["head"]["kernel"], 0)
  assert np.all(np.asarray(anchor["head"]["kernel"]) == 0)  # docs/methods.md §1: the head's reference point is zero


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"), reason="needs dataset-fashion-mnist")
def test_shipped_model_classifies_fashion_mnist():
  source = pretrained.load_source(NAME)
  info = source.info
  test = data.load_dataset("fashion_mnist").test.take(np.arange(1000))
  config = data.Preprocess(
    image_size=info["image_size"], channels=info["channels"], mean=tuple(info["mean"]), std=tuple(info["std"])
  )
  images = data.preprocess(test.images(np.arange(1000)), config)
  model = create_model(info["model"], 10, width=info["width"], stem=info["stem"])
  logits = jax.jit(model.apply)(source.variables, images)
  accuracy = np.mean(np.argmax(logits, -1) == test.labels)
  assert accuracy > info["test_accuracy"] - 0.03, accuracy
