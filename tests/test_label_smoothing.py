"""docs/methods.md §5 label smoothing: the loss against the written-out smoothed target in numpy, cross-entropy
at ε = 0, a train step, and a run end to end."""

import json
import os

import jax
import numpy as np
import optax
import pytest

from ftjax import parallel
from ftjax.methods.base import MethodContext, cross_entropy
from ftjax.methods.label_smoothing import label_smoothing, smoothed_cross_entropy
from ftjax.models import create_model
from ftjax.train import loop
from ftjax.train.state import create_train_state
from ftjax.train.steps import CompiledSteps
from tests.test_feature_regularization import random_variables
from tests.test_finetune import tiny_config

C = 5


def _logits_and_labels(seed=0):
  rng = np.random.default_rng(seed)
  return (3 * rng.normal(size=(8, C))).astype(np.float32), rng.integers(0, C, 8).astype(np.int32)


@pytest.mark.parametrize("eps", [0.1, 0.5])
def test_loss_is_cross_entropy_against_the_smoothed_target(eps):
  logits, labels = _logits_and_labels()
  log_probs = logits.astype(np.float64) - np.log(np.sum(np.exp(logits.astype(np.float64)), 1, keepdims=True))
  expected = [
    -sum(((1 - eps) * (c == labels[b]) + eps / C) * log_probs[b, c] for c in range(C)) for b in range(len(labels))
  ]
  np.testing.assert_allclose(smoothed_cross_entropy(logits, labels, eps), expected, rtol=1e-5)


def test_zero_eps_is_cross_entropy():
  logits, labels = _logits_and_labels(1)
  np.testing.assert_allclose(smoothed_cross_entropy(logits, labels, 0.0), cross_entropy(logits, labels), rtol=1e-6)


def test_a_train_step_reduces_the_loss_on_a_repeated_batch():
  model = create_model("small_cnn", C, width=4)
  tx = optax.sgd(0.1)
  state = create_train_state(random_variables(model), tx, (), jax.random.key(0))
  method = label_smoothing(
    MethodContext(config=tiny_config(), init_variables=None, anchor_variables=None, train_labels=None, num_classes=C)
  )
  mesh = parallel.data_mesh(jax.devices()[:1])
  steps = CompiledSteps(mesh, model=model, method=method, tx=tx, steps_per_epoch=10)
  rng = np.random.default_rng(0)
  batch = {
    "image": rng.normal(size=(16, 8, 8, 1)).astype(np.float32),
    "label": rng.integers(0, C, 16).astype(np.int32),
    "index": np.arange(16, dtype=np.int32),
  }
  state, batch = parallel.replicate(state, mesh), parallel.shard_batch(batch, mesh)
  losses = []
  for _ in range(4):
    state, metrics = steps.train(state, batch)
    losses.append(float(metrics["loss"]))
  assert losses[-1] < losses[0], losses
  assert np.isfinite(float(metrics["cross_entropy"]))


def test_end_to_end_run_writes_results(tmp_path):
  config = tiny_config(method="label_smoothing", optim__num_epochs=1, data__examples_per_class=20)
  results = loop.train_and_evaluate(config, str(tmp_path))
  with open(os.path.join(tmp_path, "results.json")) as f:
    written = json.load(f)
  assert written["method"] == "label_smoothing" and written["config"]["label_smoothing"]["eps"] == 0.1
  assert np.isfinite(results["train_loss"])
