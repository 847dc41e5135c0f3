"""What the every-method tests of a model family share: one run's results, and the methods with settings that keep
a one-epoch run on a tiny model meaningful (a tight constraint, label noise for the noisy-label methods)."""

import json
import os

from ftjax.train import loop

NOISY = dict(noise__type="symmetric", noise__rate=0.2)
CONSTRAINT = dict(reg__radius=0.05, reg__gamma=1.5, reg__head_radius=0.5)
METHODS = {
  "none": {},
  "l2sp": dict(method="l2sp"),
  "penalty": dict(method="penalty"),
  "constraint_frobenius": dict(method="constraint", **CONSTRAINT),
  "constraint_mars": dict(method="constraint", reg__norm="mars", **CONSTRAINT),
  "regsl": dict(method="regsl", correction__start_epoch=0, reweighting__start_epoch=0, **NOISY, **CONSTRAINT),
  "consistent": dict(method="consistent", consistent__transition="true", **NOISY, **CONSTRAINT),
  "delta": dict(method="delta", delta__num_batches=1),
  "bss": dict(method="bss"),
  "label_smoothing": dict(method="label_smoothing"),
}


def run(config, workdir) -> dict:
  """Trains `config` in `workdir` and returns its results.json as written."""
  loop.train_and_evaluate(config, str(workdir))
  with open(os.path.join(workdir, "results.json")) as f:
    return json.load(f)
