"""Noisy-label fine-tuning on digits (SPEC §3): plain fine-tuning against regsl [LZ21] and the
consistent loss [JLZ22], 40% symmetric noise, 3 seeds.

  python -m experiments.sweep --workdir workdirs/noisy_digits --config experiments/configs/sweep_noisy_digits.py

`:ablation` adds regsl with each of its three parts switched off in turn.
"""

import ml_collections

from experiments.configs import default


def get_config(arg: str | None = None):
  config = default.get_config()
  config.sweep = ml_collections.ConfigDict()
  variants = {
      "plain": ("method=none",),
      "regsl": ("method=regsl",),
      "consistent": ("method=consistent",),
  }
  if arg == "ablation":
    variants = {
        "regsl": ("method=regsl",),
        "regsl_no_constraint": ("method=regsl", "regsl.constraint=False"),
        "regsl_no_correction": ("method=regsl", "regsl.correction=False"),
        "regsl_no_reweighting": ("method=regsl", "regsl.reweighting=False"),
    }
  config.sweep.variants = variants
  config.sweep.datasets = ("digits",)
  config.sweep.noise = ("symmetric:0.4",)
  config.sweep.seeds = (0, 1, 2)
  return config
