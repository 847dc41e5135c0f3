"""docs/methods.md §3.2–3.3 against numpy re-statements: the correction rule on hand-built batches, the
reweighting weights and temperature, the self-labeling loss, and RegSL through the real train step."""

import functools

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from absl.testing import parameterized

from ftjax import parallel
from ftjax.methods import noisy_labels
from ftjax.methods.base import LossInputs, MethodContext
from ftjax.methods.label_correction import (
  LabelCorrectionState,
  correct_labels,
  init_label_correction,
  reweighting_temperature,
  reweighting_weights,
  self_labeling_loss,
)
from ftjax.train.steps import CompiledSteps
from tests.test_train_steps import _setup

THRESHOLD, START = 0.9, 3


def correct_by_loop(labels, probs, indices, epoch, threshold, start_epoch):
  """docs/methods.md §3.2 one example at a time."""
  labels = np.array(labels)
  for p, index in zip(np.asarray(probs, np.float64), indices):
    if epoch >= start_epoch and p.max() > threshold and p.argmax() != labels[index]:
      labels[index] = p.argmax()
  return labels


def _hand_batch():
  """Stored labels of 10 examples and a batch of 5 of them in shuffled order, with the rule's verdict."""
  labels = np.array([1, 4, 2, 0, 3, 0, 1, 0, 2, 3], np.int32)
  indices = np.array([7, 2, 5, 0, 9], np.int32)
  probs = np.array(
    [
      [0.02, 0.95, 0.01, 0.01, 0.01],  # 7: confident, disagrees with 0 -> becomes 1
      [0.01, 0.01, 0.95, 0.02, 0.01],  # 2: confident, already agrees
      [0.05, 0.05, 0.02, 0.85, 0.03],  # 5: disagrees but below the threshold
      [0.02, 0.90, 0.04, 0.02, 0.02],  # 0: max exactly at the threshold (not above)
      [0.99, 0.0025, 0.0025, 0.0025, 0.0025],  # 9: confident, disagrees with 3 -> becomes 0
    ],
    np.float32,
  )
  expected = labels.copy()
  expected[7], expected[9] = 1, 0
  return labels, indices, probs, expected


class CorrectLabelsTest(parameterized.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_hand_batch_changes_exactly_the_selected_examples(self):
    labels, indices, probs, expected = _hand_batch()
    correct = self.variant(functools.partial(correct_labels, threshold=THRESHOLD, start_epoch=START))
    before = correct(init_label_correction(labels), probs, indices, jnp.int32(START - 1))
    np.testing.assert_array_equal(before.labels, labels)
    assert int(before.num_changed) == int(before.last_changed) == 0
    after = correct(before, probs, indices, jnp.int32(START))
    np.testing.assert_array_equal(after.labels, expected)
    assert int(after.num_changed) == int(after.last_changed) == 2
    again = correct(after, probs, indices, jnp.int32(START + 1))
    np.testing.assert_array_equal(again.labels, expected)
    assert (int(again.num_changed), int(again.last_changed)) == (2, 0)

  @chex.variants(with_jit=True, without_jit=True)
  def test_random_batches_in_any_order_match_the_loop(self):
    rng = np.random.default_rng(0)
    n, classes = 200, 6
    state = init_label_correction(rng.integers(0, classes, n))
    expected = np.asarray(state.labels)
    correct = self.variant(functools.partial(correct_labels, threshold=0.5, start_epoch=1))
    for epoch in range(3):
      indices = rng.permutation(n)[:64].astype(np.int32)
      probs = jax.nn.softmax(3 * rng.normal(size=(64, classes))).astype(np.float32)
      expected = correct_by_loop(expected, probs, indices, epoch, 0.5, 1)
      state = correct(state, probs, indices, jnp.int32(epoch))
      np.testing.assert_array_equal(state.labels, expected)
    assert int(state.num_changed) > 0
    assert state.labels.dtype == jnp.int32


def correct_aligned_by_loop(labels, probs, indices, epoch, threshold, start_epoch, given):
  """docs/methods.md §3.2 with prior alignment, one example at a time against the marginal before the batch."""
  labels = np.array(labels)
  counts = np.bincount(labels, minlength=len(given)).astype(np.float64)
  now = np.maximum(counts / len(labels), 0.5 / len(labels))
  aligned = []
  for p in np.asarray(probs, np.float64):
    q = p * np.asarray(given, np.float64) / now
    aligned.append(q / q.sum())
  return correct_by_loop(labels, np.asarray(aligned), indices, epoch, threshold, start_epoch)


@pytest.mark.parametrize("jit", [True, False])
def test_prior_alignment_matches_the_written_out_rule(jit):
  rng = np.random.default_rng(1)
  n, classes = 120, 4
  start = rng.integers(0, classes, n).astype(np.int32)
  given = np.bincount(start, minlength=classes) / n
  state = init_label_correction(start)
  expected = start
  correct = functools.partial(correct_labels, threshold=0.6, start_epoch=0, given_marginal=jnp.asarray(given))
  correct = jax.jit(correct) if jit else correct
  for step in range(6):
    indices = rng.permutation(n)[:40].astype(np.int32)
    probs = jax.nn.softmax(2.5 * rng.normal(size=(40, classes)) + np.array([2.0, 0, 0, 0])).astype(np.float32)
    expected = correct_aligned_by_loop(expected, probs, indices, step, 0.6, 0, given)
    state = correct(state, probs, indices, jnp.int32(step))
    np.testing.assert_array_equal(state.labels, expected)
  assert int(state.num_changed) > 0


def test_prior_alignment_keeps_a_class_from_being_drained():
  """A model that leans to class 1 for every example drains class 0 without alignment; with it, a class that has
  lost labels is favoured, so the stored labels stop moving towards 1 long before class 0 is empty."""
  n = 100
  start = np.repeat(np.arange(2), n // 2).astype(np.int32)
  probs = np.tile(np.array([[0.05, 0.95]], np.float32), (n, 1))
  indices = np.arange(n, dtype=np.int32)
  plain = correct_labels(init_label_correction(start), probs, indices, jnp.int32(0), 0.9, 0)
  assert int(np.sum(np.asarray(plain.labels) == 0)) == 0
  given = jnp.asarray([0.5, 0.5])
  state = init_label_correction(start)
  for step in range(20):
    for batch in np.split(indices, 10):
      state = correct_labels(state, probs[batch], batch, jnp.int32(step), 0.9, 0, given_marginal=given)
  remaining = int(np.sum(np.asarray(state.labels) == 0))
  # Written out: with π_0 + π_1 = 1 the aligned q_1 = 0.95 π_0 / (0.05 π_1 + 0.95 π_0) exceeds 0.9 exactly while
  # π_0 > 0.045 / 0.14; the marginal is read before each batch of 10, so the last batch may overshoot by up to 10.
  stop = 0.045 / 0.14 * n
  assert stop - 10 <= remaining <= stop + 1


def test_weights_are_the_softmax_of_negative_losses_and_carry_no_gradient():
  losses = np.array([0.3, 2.0, 0.05, 1.1, 4.0], np.float32)
  temperature = 0.7
  expected = np.exp(-losses / temperature) / np.sum(np.exp(-losses / temperature))
  np.testing.assert_allclose(reweighting_weights(losses, temperature), expected, rtol=1e-6)
  grad = jax.grad(lambda x: jnp.sum(reweighting_weights(x, temperature) * jnp.arange(5.0)))(jnp.asarray(losses))
  np.testing.assert_array_equal(grad, np.zeros(5))


@pytest.mark.parametrize(
  "epoch, expected",
  [
    (5, 2.0),
    (6, 2.0 * np.exp(-0.1)),
    (10, 2.0 * np.exp(-0.5)),
    (11, 2.0 * np.exp(-0.6)),
    (12, 1.0),
    (30, 1.0),
    (3, 2.0 * np.exp(0.2)),  # exp(-0.7) < 0.5 from epoch 12 on
  ],
)
def test_temperature_schedule_by_hand(epoch, expected):
  np.testing.assert_allclose(reweighting_temperature(epoch, 2.0, 5), expected, rtol=1e-6)
  np.testing.assert_allclose(
    jax.jit(reweighting_temperature, static_argnums=(1, 2))(jnp.int32(epoch), 2.0, 5), expected, rtol=1e-6
  )


def _numpy_cross_entropy(logits, labels):
  logits = logits.astype(np.float64)
  shifted = logits - logits.max(1, keepdims=True)
  log_probs = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
  return -log_probs[np.arange(len(labels)), labels]


@pytest.mark.parametrize("reweight", [True, False])
@pytest.mark.parametrize("epoch", [2, 5, 9])
def test_self_labeling_loss_is_the_written_out_weighted_sum(reweight, epoch):
  rng = np.random.default_rng(epoch)
  logits = rng.normal(size=(8, 4)).astype(np.float32) * 2
  labels = rng.integers(0, 4, 8)
  losses = _numpy_cross_entropy(logits, labels)
  if reweight and epoch >= 5:
    temperature = 1.5 * max(0.5, np.exp(-0.1 * (epoch - 5)))
    weights = np.exp(-losses / temperature) / np.exp(-losses / temperature).sum()
  else:
    weights = np.full(8, 1 / 8)
  loss_fn = jax.jit(lambda z, e: self_labeling_loss(z, labels, e, reweight, 1.5, 5))
  loss, got_weights = loss_fn(logits, jnp.int32(epoch))
  np.testing.assert_allclose(loss, np.sum(weights * losses), rtol=1e-5)
  np.testing.assert_allclose(got_weights, weights, rtol=1e-5)
  # The weights are constants: the gradient is Σ w_i ∇loss_i.
  fixed = jax.grad(lambda z: jnp.sum(weights * optax.softmax_cross_entropy_with_integer_labels(z, labels)))(logits)
  chex.assert_trees_all_close(jax.grad(lambda z: loss_fn(z, jnp.int32(epoch))[0])(logits), fixed, atol=1e-6)


def _regsl_config(correction=True, threshold=0.9, align_prior=False):
  config = ml_collections.ConfigDict()
  config.regsl = dict(constraint=False, correction=correction, reweighting=True)
  config.correction = dict(threshold=threshold, start_epoch=1, align_prior=align_prior)
  config.reweighting = dict(start_epoch=1, temperature=1.0)
  return config


def _shuffled(batch, seed):
  order = np.random.default_rng(seed).permutation(len(batch["label"]))
  return {name: value[order] for name, value in batch.items()}


def _train_mode_probs(model, state, batch):
  logits, _ = model.apply(
    {"params": state.params, "batch_stats": state.batch_stats}, batch["image"], train=True, mutable=["batch_stats"]
  )
  return np.asarray(jax.nn.softmax(logits), np.float64)


@pytest.mark.parametrize("align_prior", [False, True])
def test_regsl_in_the_train_step_corrects_labels_where_the_rule_says(align_prior):
  model, tx, state, batches = _setup()
  start_labels = np.concatenate([b["label"] for b in batches])
  first, second = _shuffled(batches[0], 0), _shuffled(batches[2], 1)
  # About half of the second batch is confident enough (median confidence before the first step).
  threshold = float(np.median(_train_mode_probs(model, state, second).max(1)))
  config = _regsl_config(threshold=threshold, align_prior=align_prior)
  method = noisy_labels.regsl(MethodContext(config, {}, {}, start_labels, 5))
  mesh = parallel.data_mesh()
  # One step per epoch: the first step runs in epoch 0, before E_correct = 1; the second in epoch 1.
  steps = CompiledSteps(mesh, model=model, method=method, tx=tx, steps_per_epoch=1, donate=False)
  state = parallel.replicate(state.replace(method_state=method.init_state), mesh)
  state, _ = steps.train(state, parallel.shard_batch(first, mesh))
  np.testing.assert_array_equal(jax.device_get(state.method_state.labels), start_labels)
  probs = _train_mode_probs(model, jax.device_get(state), second)  # what the step's update_state sees
  state, metrics = steps.train(state, parallel.shard_batch(second, mesh))
  labels = jax.device_get(state.method_state.labels)
  if align_prior:
    given = np.bincount(start_labels, minlength=5) / len(start_labels)
    expected = correct_aligned_by_loop(start_labels, probs, second["index"], 1, threshold, 1, given)
  else:
    expected = correct_by_loop(start_labels, probs, second["index"], 1, threshold, 1)
  np.testing.assert_array_equal(labels, expected)
  assert 0 < np.sum(labels != start_labels) < len(second["index"])
  assert isinstance(state.method_state, LabelCorrectionState)
  assert int(state.method_state.num_changed) == np.sum(labels != start_labels)
  assert set(metrics) >= {"loss", "unweighted_loss", "max_weight", "weight_entropy", "labels_changed"}


def test_regsl_without_correction_keeps_the_state():
  labels, indices, probs, _ = _hand_batch()
  method = noisy_labels.regsl(MethodContext(_regsl_config(correction=False), {}, {}, labels, 5))
  state = method.update_state(method.init_state, probs, {"index": indices}, jnp.int32(START))
  chex.assert_trees_all_equal(state, method.init_state)


def test_regsl_loss_reads_the_stored_labels_not_the_batch_labels():
  labels = np.array([0, 1, 2, 0], np.int32)
  method = noisy_labels.regsl(MethodContext(_regsl_config(), {}, {}, labels, 3))
  logits = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3)), jnp.float32)
  batch = {"label": np.array([1, 1], np.int32), "index": np.array([2, 0], np.int32)}
  loss, metrics = method.loss(LossInputs(logits, {}, batch, method.init_state, jnp.int32(0), None))
  np.testing.assert_allclose(loss, np.mean(_numpy_cross_entropy(np.asarray(logits), np.array([2, 0]))), rtol=1e-6)
  np.testing.assert_allclose(metrics["weight_entropy"], np.log(2), rtol=1e-6)
