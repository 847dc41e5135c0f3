"""Distance-regularised fine-tuning in the pipeline (docs/methods.md §2): the config's methods end where
they promise, log per-layer distances, and bad settings are refused before training."""

import chex
import jax
import numpy as np
import pytest

from ftjax import checkpoint_io
from ftjax.config_validation import ConfigError
from ftjax.distance import projection
from ftjax.methods.base import Method, cross_entropy_loss
from ftjax.metrics_writer import read_metrics
from ftjax.train import loop
from tests.test_finetune import tiny_config
from tests.test_train_steps import _run


def _final_params(workdir):
  return checkpoint_io.restore_model(f"{workdir}/checkpoints")[0]["params"]


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("plain"))
  return workdir, loop.train_and_evaluate(tiny_config(optim__num_epochs=1), workdir)


@pytest.mark.parametrize("norm", ["frobenius", "mars"])
def test_tight_constraint_keeps_every_layer_within_its_radius(tmp_path, norm):
  config = tiny_config(optim__num_epochs=1, method="constraint")
  config.reg.update(norm=norm, radius=0.01, gamma=2.0, head_radius=0.05, bn_radius=0.1)
  results = loop.train_and_evaluate(config, str(tmp_path))
  radii = results["radii"]
  # Depth schedule (docs/methods.md §2.4): conv1 D, conv2 D·γ, dense D·γ², head D_head.
  assert radii == {"conv1/kernel": 0.01, "conv2/kernel": 0.02, "dense/kernel": 0.04, "head/kernel": 0.05}
  for name, distance in results["layer_distances"].items():
    assert distance[norm] <= radii[name] * (1 + 1e-5), (name, distance, radii[name])
    assert distance[norm] >= 0.5 * radii[name]  # the constraint is active, not trivially met
  record = read_metrics(str(tmp_path))[-1]
  assert record[f"distance/conv2/kernel/{norm}"] == pytest.approx(results["layer_distances"]["conv2/kernel"][norm])


def test_loose_constraint_equals_plain_finetuning(plain_run, tmp_path):
  workdir, plain = plain_run
  config = tiny_config(optim__num_epochs=1, method="constraint")
  config.reg.update(radius=1e6, head_radius=1e6, bn_radius=1e6)
  loose = loop.train_and_evaluate(config, str(tmp_path))
  chex.assert_trees_all_close(_final_params(str(tmp_path)), _final_params(workdir), atol=1e-6, rtol=1e-6)
  assert loose["test_accuracy"] == pytest.approx(plain["test_accuracy"], abs=1 / 360)


@pytest.mark.parametrize("method", ["l2sp", "penalty"])
def test_strong_penalty_pulls_layers_toward_the_anchor(plain_run, tmp_path, method):
  _, plain = plain_run
  config = tiny_config(optim__num_epochs=1, method=method)
  config.reg.update(weight=5.0, head_weight=5.0)
  results = loop.train_and_evaluate(config, str(tmp_path))
  assert set(results["penalty_weights"]) == set(plain["layer_distances"])
  for name, distance in results["layer_distances"].items():
    assert distance["frobenius"] < plain["layer_distances"][name]["frobenius"], name


def test_constraint_in_the_eight_device_step_matches_one_device():
  def constrained(model, state):
    params = jax.device_get(state.params)
    radii = {"conv1/kernel": 0.01, "conv2/kernel": 0.02, "dense/kernel": 0.05, "head/kernel": 0.05}
    post = projection.distance_projection(params, radii, "mars")
    return Method("constraint", cross_entropy_loss, post_optimizer=post)

  one, _ = _run(1, method_fn=constrained)
  eight, _ = _run(8, method_fn=constrained)
  chex.assert_trees_all_close(one.params, eight.params, atol=1e-5, rtol=1e-5)
  assert float(
    np.abs(np.asarray(eight.params["conv1"]["kernel"]) - np.asarray(one.opt_state[2].anchor["conv1"]["kernel"]))
    .sum(axis=(0, 1, 2))
    .max()
  ) <= 0.01 * (1 + 1e-5)


@pytest.mark.parametrize(
  "field, value, message",
  [
    ("gamma", 0.5, "config.reg.gamma=0.5 is invalid; valid: a number in [1.0, inf)"),
    ("radius", -1.0, "config.reg.radius=-1.0 is invalid"),
    ("norm", "spectral", "config.reg.norm='spectral' is invalid; valid: one of 'frobenius', 'mars'"),
    (
      "groups",
      (("conv.*", "early"), ("head/.*", "head")),
      "weight tensor 'dense/kernel' matches no layer-group pattern",
    ),
    ("group_values", (("stage9", 1.0),), "values given for unknown groups ['stage9']"),
    ("group_values", ("stage1=1.0",), "config.reg.group_values=('stage1=1.0',) is invalid"),
    ("group_values", (("stage1", "big"),), "valid: a tuple of (str, float) pairs"),
  ],
)
def test_bad_regularisation_settings_are_refused(tmp_path, field, value, message):
  config = tiny_config(method="constraint")
  config.reg[field] = value
  with pytest.raises(ConfigError) as error:
    loop.train_and_evaluate(config, str(tmp_path / "w"))
  assert message in str(error.value)
  assert not (tmp_path / "w").exists()
