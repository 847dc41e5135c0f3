"""Every method on a text encoder, offline: the shipped WordNet-nouns BERT (`text.py:wordnet`) fine-tuned on the
WordNet verb glosses (14 supersenses) at 40% symmetric label noise, 3 seeds.

  python -m experiments.sweep --workdir workdirs/wordnet_noisy --config experiments/configs/sweep_wordnet.py

Plain fine-tuning against MARS-SP, the layer-wise Frobenius constraint, regsl and the consistent loss. 10% of the
training split is held out for validation (its labels as noisy as the training ones); the radii of MARS-SP and of the
layer-wise constraint are chosen on it from two settings each, regsl's correction threshold and start epoch from
four (its parts start within the 5 epochs these runs last), and every run reports the test accuracy of its model
selected on validation. Plain fine-tuning moves the encoder's kernels 0.9 to 2.2 in Frobenius norm and 1.2 to 2.9
in MARS norm (seed 0); the radii tried sit below that.

`:learning_rate`: how `text.py:wordnet`'s learning rate was chosen: plain fine-tuning at three learning rates, same
noise, seeds and validation split; the one with the best mean validation accuracy is the config's.
"""

import ml_collections

from experiments.configs import text
from experiments.configs.sweep_variants import NOISY, PLAIN, UNTUNED_RADIUS_DISTANCE, validated_noisy_sweep

VARIANTS = ("methods", "learning_rate")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant = arg or "methods"
  if variant not in VARIANTS:
    raise ValueError(f"sweep_wordnet config argument {arg!r}; valid: none, {', '.join(repr(v) for v in VARIANTS)}")
  config = text.get_config("wordnet")
  config.run.log_every = 100
  if variant == "learning_rate":
    return validated_noisy_sweep(
      config, dict(PLAIN), {"plain": (("optim.learning_rate", (1e-3, 3e-3, 1e-2)),)}, "wordnet_verbs"
    )
  variants = {
    **PLAIN,
    **UNTUNED_RADIUS_DISTANCE,
    # these runs last 5 epochs: reweighting from epoch 1, correction from epoch 2 or 3
    "regsl": ("method=regsl", "reweighting.start_epoch=1"),
    "consistent": NOISY["consistent"],
  }
  tune = {
    "mars_sp": (("reg.radius", (0.5, 1.5)),),
    "layerwise": (("reg.radius", (0.3, 1.0)),),
    "regsl": (("correction.threshold", (0.5, 0.8)), ("correction.start_epoch", (2, 3))),
  }
  return validated_noisy_sweep(config, variants, tune, "wordnet_verbs")
