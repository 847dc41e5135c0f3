"""The pure train/eval steps: one device against eight, and eval sums against numpy."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ftjax import parallel
from ftjax.methods.registry import plain_finetuning
from ftjax.models import create_model
from ftjax.train.state import create_train_state
from ftjax.train.steps import CompiledSteps

BATCH = 16


def _setup(seed=0):
  model = create_model("small_cnn", num_classes=5, width=4)
  rng = np.random.default_rng(seed)
  batches = [
    {
      "image": rng.normal(size=(BATCH, 12, 12, 1)).astype(np.float32),
      "label": rng.integers(0, 5, BATCH).astype(np.int32),
      "index": np.arange(BATCH, dtype=np.int32) + i * BATCH,
    }
    for i in range(3)
  ]
  variables = model.init(jax.random.key(0), batches[0]["image"], train=False)
  tx = optax.sgd(0.1, momentum=0.9)
  state = create_train_state(variables, tx, (), jax.random.key(1))
  return model, tx, state, batches


def _run(num_devices, method_fn=lambda model, state: plain_finetuning(None)):
  """Three train steps on `num_devices` devices of `method_fn(model, initial state)`."""
  model, tx, state, batches = _setup()
  method = method_fn(model, state)
  tx = optax.chain(method.pre_optimizer, tx, method.post_optimizer)
  state = state.replace(opt_state=tx.init(state.params))
  mesh = parallel.data_mesh(jax.devices()[:num_devices])
  steps = CompiledSteps(mesh, model=model, method=method, tx=tx, steps_per_epoch=10)
  state = parallel.replicate(state, mesh)
  history = []
  for batch in batches:
    state, metrics = steps.train(state, parallel.shard_batch(batch, mesh))
    history.append(jax.device_get(metrics))
  return jax.device_get(state), history


def test_eight_devices_match_one_device():
  assert jax.device_count() == 8
  one, metrics_one = _run(1)
  eight, metrics_eight = _run(8)
  chex.assert_trees_all_close(one.params, eight.params, atol=1e-5, rtol=1e-5)
  chex.assert_trees_all_close(one.batch_stats, eight.batch_stats, atol=1e-5, rtol=1e-5)
  chex.assert_trees_all_close(metrics_one, metrics_eight, atol=1e-5, rtol=1e-5)
  assert int(one.step) == int(eight.step) == 3


def test_train_step_is_one_sgd_step_on_the_batch_loss():
  model, tx, state, batches = _setup()
  batch = batches[0]

  def loss(params):
    logits, _ = model.apply(
      {"params": params, "batch_stats": state.batch_stats}, batch["image"], train=True, mutable=["batch_stats"]
    )
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]))

  expected = jax.tree.map(lambda p, g: p - 0.1 * g, state.params, jax.grad(loss)(state.params))
  mesh = parallel.data_mesh(jax.devices()[:1])
  steps = CompiledSteps(mesh, model=model, method=plain_finetuning(None), tx=tx, steps_per_epoch=10, donate=False)
  new_state, metrics = steps.train(state, batch)
  chex.assert_trees_all_close(new_state.params, expected, atol=1e-6)
  np.testing.assert_allclose(metrics["loss"], loss(state.params), rtol=1e-6)


def test_eval_step_sums_match_numpy():
  model, tx, state, batches = _setup()
  batch = dict(batches[1], mask=np.array([1.0] * 12 + [0.0] * 4, np.float32))
  mesh = parallel.data_mesh()
  steps = CompiledSteps(mesh, model=model, method=plain_finetuning(None), tx=tx, steps_per_epoch=10, donate=False)
  sums = jax.device_get(steps.eval(parallel.replicate(state, mesh), parallel.shard_batch(batch, mesh)))
  logits = np.asarray(model.apply({"params": state.params, "batch_stats": state.batch_stats}, batch["image"]))
  log_probs = (
    logits
    - np.log(np.sum(np.exp(logits - logits.max(1, keepdims=True)), 1, keepdims=True))
    - logits.max(1, keepdims=True)
  )
  losses = -log_probs[np.arange(BATCH), batch["label"]][:12]
  np.testing.assert_allclose(sums["loss_sum"], losses.sum(), rtol=1e-5)
  np.testing.assert_allclose(sums["max_loss"], losses.max(), rtol=1e-5)
  assert sums["count"] == 12
  assert sums["correct"] == np.sum(np.argmax(logits, 1)[:12] == batch["label"][:12])
