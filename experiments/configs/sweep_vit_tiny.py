"""Every method on a Vision Transformer, offline: the shipped Fashion-MNIST ViT (`vit.py:tiny`) fine-tuned on
scikit-learn's digits at 40% symmetric label noise, 3 seeds.

  python -m experiments.sweep --workdir workdirs/vit_tiny_noisy --config experiments/configs/sweep_vit_tiny.py

Plain fine-tuning against MARS-SP, the layer-wise Frobenius constraint, regsl and the consistent loss. 10% of
the training split is held out for validation (its labels as noisy as the training ones); the radii of MARS-SP
and of the layer-wise constraint are chosen on it from two settings each, and every run reports the test
accuracy of its model selected on validation. Plain fine-tuning moves the tiny ViT's kernels 0.4 (patch
embedding) to 4 (last MLP) in Frobenius norm and up to 6.5 in MARS norm; the radii tried sit below that.
"""

import ml_collections

from experiments.configs import vit
from experiments.configs.sweep_variants import NOISY, PLAIN, UNTUNED_RADIUS_DISTANCE, validated_noisy_sweep


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  if arg is not None:
    raise ValueError(f"sweep_vit_tiny config argument {arg!r}; valid: none")
  config = vit.get_config("tiny")
  config.run.log_every = 40
  variants = {**PLAIN, **UNTUNED_RADIUS_DISTANCE, **NOISY}
  tune = {"mars_sp": (("reg.radius", (1.0, 3.0)),), "layerwise": (("reg.radius", (0.5, 1.5)),)}
  return validated_noisy_sweep(config, variants, tune, "digits")
