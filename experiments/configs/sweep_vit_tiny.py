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
from experiments.configs.sweep_variants import NOISY, PLAIN


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  if arg is not None:
    raise ValueError(f"sweep_vit_tiny config argument {arg!r}; valid: none")
  config = vit.get_config("tiny")
  config.data.validation_fraction = 0.1
  config.run.log_every = 40
  config.sweep = ml_collections.ConfigDict()
  config.sweep.only = ""  # e.g. --config.sweep.only=plain,regsl; "" = every variant
  variants = {
    **PLAIN,
    "mars_sp": ("method=constraint", "reg.norm=mars", "reg.gamma=1.0", "reg.head_radius=10.0"),
    "layerwise": ("method=constraint", "reg.norm=frobenius", "reg.gamma=1.5", "reg.head_radius=3.0"),
    **NOISY,
  }
  config.sweep.variants = variants
  config.sweep.order = tuple(variants)
  config.sweep.tune = {"mars_sp": (("reg.radius", (1.0, 3.0)),), "layerwise": (("reg.radius", (0.5, 1.5)),)}
  config.sweep.datasets = ("digits",)
  config.sweep.noise = ("symmetric:0.4",)
  config.sweep.seeds = (0, 1, 2)
  config.sweep.measure = False
  config.sweep.measure_seeds = (0,)
  config.sweep.measure_settings = {}
  return config
