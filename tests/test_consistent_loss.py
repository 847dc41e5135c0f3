"""docs/methods.md §3.4: the forward-corrected loss against −log(Σ p F) in numpy, and the dual-T estimator
against a loop re-statement and on synthetic probabilities with a known transition matrix."""

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from ftjax import label_noise
from ftjax.methods import distance_regularization, noisy_labels
from ftjax.methods.base import LossInputs, MethodContext
from ftjax.methods.consistent_loss import anchor_transition, dual_t_estimate, forward_corrected_loss
from ftjax.models import create_model, structure_of
from tests.test_finetune import tiny_config

C = 4


def _numpy_forward_loss(logits, labels, transition):
  logits = logits.astype(np.float64)
  probs = np.exp(logits - logits.max(1, keepdims=True))
  probs /= probs.sum(1, keepdims=True)
  return np.mean([-np.log(sum(probs[b, c] * transition[c, labels[b]] for c in range(C))) for b in range(len(labels))])


TRANSITIONS = {
  "symmetric": label_noise.symmetric_transition(C, 0.3),
  "pairflip_with_zeros": label_noise.pairflip_transition(C, 0.4),
  "dense": np.array([[0.7, 0.1, 0.1, 0.1], [0.0, 0.5, 0.5, 0.0], [0.2, 0.0, 0.8, 0.0], [0.25, 0.25, 0.25, 0.25]]),
}


@pytest.mark.parametrize("name", sorted(TRANSITIONS))
def test_forward_loss_is_minus_log_of_p_times_f(name):
  transition = TRANSITIONS[name]
  rng = np.random.default_rng(0)
  logits = (3 * rng.normal(size=(16, C))).astype(np.float32)
  labels = rng.integers(0, C, 16)
  loss = jax.jit(forward_corrected_loss)(logits, labels, transition)
  np.testing.assert_allclose(loss, _numpy_forward_loss(logits, labels, transition), rtol=1e-5)
  grad = jax.grad(forward_corrected_loss)(jnp.asarray(logits), labels, transition)
  assert np.all(np.isfinite(grad))
  # Numerical gradient of the numpy loss along a random direction.
  direction = rng.normal(size=logits.shape)
  eps = 1e-3
  numeric = (
    _numpy_forward_loss(logits + eps * direction, labels, transition)
    - _numpy_forward_loss(logits - eps * direction, labels, transition)
  ) / (2 * eps)
  np.testing.assert_allclose(np.sum(np.asarray(grad) * direction), numeric, rtol=1e-3, atol=1e-5)


def test_forward_loss_stays_finite_for_extreme_logits():
  logits = jnp.array([[60.0, -60.0, 0.0, 0.0], [-80.0, 80.0, -80.0, -80.0]])
  labels = jnp.array([1, 3])  # under pair-flip only classes y − 1 and y can give label y
  transition = TRANSITIONS["pairflip_with_zeros"]
  loss, grad = jax.value_and_grad(forward_corrected_loss)(logits, labels, transition)
  expected = (-np.log(0.4) + 160.0) / 2  # row 1: (p_2 + p_3)·... = e^-160 (0.4 + 0.6)
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  assert np.all(np.isfinite(grad))


def test_forward_loss_with_identity_is_cross_entropy():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(32, C)).astype(np.float32)
  labels = rng.integers(0, C, 32)
  np.testing.assert_allclose(
    forward_corrected_loss(logits, labels, np.eye(C)),
    np.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels)),
    rtol=1e-6,
  )


def dual_t_by_loops(probs, noisy, percentile):
  """docs/methods.md §3.4 one class at a time; T_spade rows of never-predicted classes are e_i."""
  n, classes = probs.shape
  predicted = probs.argmax(1)
  spade = np.eye(classes)
  for i in range(classes):
    mine = noisy[predicted == i]
    if len(mine):
      spade[i] = [np.mean(mine == j) for j in range(classes)]
  club = np.zeros((classes, classes))
  for i in range(classes):
    column = np.sort(probs[:, i])
    threshold = column[int(np.ceil(percentile / 100 * (n - 1)))]  # numpy's 'higher' percentile
    kept = [k for k in range(n) if probs[k, i] < threshold]
    club[i] = probs[max(kept, key=lambda k: probs[k, i])]
  return club @ spade


def _clean_posteriors(labels, num_classes, rng):
  """Probabilities of a model that has learned the clean classes: p_y ~ Beta(8, 1) on the true
  class, the rest spread over the others."""
  confidence = rng.beta(8, 1, len(labels))
  rest = rng.dirichlet(np.ones(num_classes - 1), len(labels)) * (1 - confidence)[:, None]
  probs = np.zeros((len(labels), num_classes))
  others = np.array([[j for j in range(num_classes) if j != y] for y in labels])
  probs[np.arange(len(labels))[:, None], others] = rest
  probs[np.arange(len(labels)), labels] = confidence
  return probs


def _synthetic(num_classes=5, n=20_000, seed=0):
  rng = np.random.default_rng(seed)
  transition = 0.5 * label_noise.pairflip_transition(num_classes, 0.3) + 0.5 * label_noise.symmetric_transition(
    num_classes, 0.2
  )
  clean = rng.integers(0, num_classes, n)
  noisy = label_noise.corrupt_labels(clean, transition, seed + 1)
  return transition, clean, noisy, _clean_posteriors(clean, num_classes, rng)


def test_dual_t_matches_the_loop_restatement():
  rng = np.random.default_rng(2)
  probs = jax.nn.softmax(2 * rng.normal(size=(300, C)))
  noisy = rng.integers(0, C, 300)
  for percentile in (97.0, 90.0):
    np.testing.assert_allclose(
      dual_t_estimate(probs, noisy, percentile),
      dual_t_by_loops(np.asarray(probs, np.float64), noisy, percentile),
      atol=1e-12,
    )


def test_dual_t_recovers_the_matrix_from_a_model_of_the_clean_classes():
  transition, _, noisy, probs = _synthetic()
  estimate = dual_t_estimate(probs, noisy)
  assert np.abs(estimate - transition).max() < 0.05
  np.testing.assert_allclose(estimate.sum(1), 1.0, atol=1e-9)


def test_dual_t_on_the_noisy_posterior_gives_f_times_f():
  """Probabilities p = q F (q the clean posterior): T_club ≈ F (anchors are clean examples) and
  T_spade ≈ F (the argmax is the clean class), so the product is ≈ F F, not F."""
  transition, _, noisy, probs = _synthetic()
  estimate = dual_t_estimate(probs @ transition, noisy)
  assert np.abs(estimate - transition @ transition).max() < 0.05
  assert np.abs(estimate - transition).max() > 0.1


def test_anchor_points_alone_recover_the_matrix_from_the_noisy_posterior():
  transition, _, _, probs = _synthetic()
  estimate = anchor_transition(probs @ transition)
  assert np.abs(estimate - transition).max() < 0.05


def test_dual_t_row_of_a_never_predicted_class_is_its_unit_vector():
  probs = np.array([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.1, 0.2, 0.7], [0.2, 0.1, 0.7], [0.6, 0.3, 0.1]])
  noisy = np.array([0, 1, 2, 2, 0])
  estimate = dual_t_estimate(probs, noisy, percentile=50.0)
  np.testing.assert_allclose(estimate, dual_t_by_loops(probs, noisy, 50.0))
  np.testing.assert_allclose(estimate.sum(1), 1.0)


def _consistent_config(constraint=False):
  config = ml_collections.ConfigDict()
  config.consistent = dict(constraint=constraint)
  return config


def test_consistent_method_loss_and_results():
  transition = TRANSITIONS["dense"]
  method = noisy_labels.consistent(MethodContext(_consistent_config(), {}, {}, np.zeros(4, np.int32), C), transition)
  rng = np.random.default_rng(3)
  logits = rng.normal(size=(8, C)).astype(np.float32)
  batch = {"label": rng.integers(0, C, 8), "index": np.arange(8)}
  loss, metrics = method.loss(LossInputs(jnp.asarray(logits), {}, batch, (), jnp.int32(0), None))
  np.testing.assert_allclose(loss, _numpy_forward_loss(logits, batch["label"], transition), rtol=1e-5)
  assert metrics == {}
  assert method.results == {"transition_matrix": transition.tolist()}
  chex.assert_trees_all_equal(method.init_state, ())


def test_consistent_refuses_a_matrix_of_the_wrong_size():
  context = MethodContext(_consistent_config(), {}, {}, np.zeros(4, np.int32), C)
  with pytest.raises(ValueError, match=r"has shape \(3, 3\); valid: \(4, 4\)"):
    noisy_labels.consistent(context, np.eye(3))


@pytest.mark.parametrize("name", ["regsl", "consistent"])
def test_constraint_flag_chains_the_layerwise_projection(name):
  config = tiny_config(method=name)
  model = create_model(config.model.name, num_classes=C, width=config.model.width)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), train=False))
  variables = jax.tree.map(lambda leaf: np.zeros(leaf.shape, leaf.dtype), shapes)
  build = {"regsl": noisy_labels.regsl, "consistent": lambda context: noisy_labels.consistent(context, np.eye(C))}[name]
  for constrained in (True, False):
    config[name].constraint = constrained
    context = MethodContext(
      config,
      variables,
      {"params": variables["params"]},
      np.zeros(4, np.int32),
      C,
      structure=structure_of(config.model.name),
    )
    expected = distance_regularization.constraint(context).post_optimizer if constrained else optax.identity()
    state = build(context).post_optimizer.init(variables["params"])
    chex.assert_trees_all_equal_structs(state, expected.init(variables["params"]))
