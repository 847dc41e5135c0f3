"""A seeded, stratified part of a training split held out for validation (model selection)."""

import numpy as np

HOLDOUT_SEED = 20_211_207  # fixed: the validation examples do not depend on a run's seed


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int = HOLDOUT_SEED) -> tuple[np.ndarray, np.ndarray]:
  """(kept, held out): sorted indices into `labels` [n] that partition them, holding out round(fraction · n_c) of
  the n_c examples of each class c, drawn by `seed` — at least one of a class of two or more, and never its last."""
  rng = np.random.default_rng(seed)
  held = []
  for label in np.unique(labels):
    members = np.flatnonzero(labels == label)
    count = int(round(fraction * len(members))) if fraction > 0 else 0
    if fraction > 0 and len(members) >= 2:
      count = min(max(count, 1), len(members) - 1)
    else:
      count = 0
    held.append(rng.permutation(members)[:count])
  held_out = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
  kept = np.setdiff1d(np.arange(len(labels)), held_out)
  return kept, held_out
