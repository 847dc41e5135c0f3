"""Noisy-label fine-tuning on digits (docs/methods.md §3): plain fine-tuning against regsl [LZ21] and the
consistent loss [JLZ22], 40% symmetric noise, 3 seeds.

  python -m experiments.sweep --workdir workdirs/noisy_digits --config experiments/configs/sweep_noisy_digits.py

`:ablation` runs regsl with each of its three parts switched off in turn. `:settings` runs plain,
regsl and consistent over all six noise settings below. `:full` is claim (b):
20/40/60% symmetric and pair-flip noise, regsl and consistent against plain fine-tuning, the
distance baselines (L2-SP, MARS-SP) and the feature/label baselines (label smoothing, DELTA, BSS);
it shares run directories with the default grid, so pointing it at the same workdir reuses those
runs. For a real dataset change `sweep.datasets` (e.g. "('tfds:caltech101',)"); for other weights
`pretrained` (e.g. a torchvision ResNet-50 .safetensors: `model='auto'` takes its architecture).
`:tuned` is the honest comparison: 10% of the training split held out for validation (labels as noisy
as the training ones), regsl's correction threshold and start epoch tuned on it, every run's model selected
on validation, at 40% symmetric and 40% pair-flip noise (`summary.md` says which setting each row is).
`:tuned_full` is claim (b) tuned: every method of `:full` at all six noise settings on the same validation split,
each baseline choosing between its published strength and a stronger one, regsl as in `:tuned` (288 runs); with
`--config.sweep.measure=True` the tuned configs measure each run's model selected on validation.
`:seeds` is the stability study: a small target (30 labelled examples per class), 40% pair-flip and symmetric
noise, 5 seeds, plain fine-tuning against regsl as published, regsl without reweighting, regsl with prior-aligned
correction (`correction.align_prior`, docs/methods.md §3.2) and the consistent loss; `label_trajectories.png`
draws every seed's labels.
`--config.sweep.only=plain,consistent` runs (and summarises) those variants alone. A consistent cell
estimates its transition matrix from the plain cell of the same noise and seed (trained first).
"""

import ml_collections

from experiments.configs import default
from experiments.configs.sweep_variants import BASELINES, DISTANCE, NOISY, PLAIN, SWEEP_MEASURE_SETTINGS

REGSL_GRID = (("correction.threshold", (0.8, 0.95)), ("correction.start_epoch", (5, 10)))


def get_config(arg: str | None = None):
  config = default.get_config()
  config.model.name = "auto"  # the source's architecture and input format: a new `pretrained` is one field
  config.run.log_every = 44  # every 2 epochs of the digits (1437 examples / 64 = 22 steps each): 10 lines per run
  config.sweep = ml_collections.ConfigDict()
  config.sweep.only = ""  # e.g. --config.sweep.only=plain,regsl; "" = every variant
  variants = {**PLAIN, **NOISY}
  noise = ("symmetric:0.4",)
  if arg == "ablation":
    variants = {
      "regsl": ("method=regsl",),
      "regsl_no_constraint": ("method=regsl", "regsl.constraint=False"),
      "regsl_no_correction": ("method=regsl", "regsl.correction=False"),
      "regsl_no_reweighting": ("method=regsl", "regsl.reweighting=False"),
    }
  elif arg in ("settings", "full"):
    if arg == "full":
      variants = {**PLAIN, **{k: DISTANCE[k] for k in ("l2sp", "mars_sp")}, **BASELINES, **NOISY}
    noise = tuple(f"{kind}:{rate}" for kind in ("symmetric", "pairflip") for rate in (0.2, 0.4, 0.6))
  elif arg == "tuned":
    config.data.validation_fraction = 0.1
    noise = ("symmetric:0.4", "pairflip:0.4")
    config.sweep.tune = {"regsl": REGSL_GRID}
  elif arg == "tuned_full":
    config.data.validation_fraction = 0.1
    variants = {**PLAIN, **{k: DISTANCE[k] for k in ("l2sp", "mars_sp")}, **BASELINES, **NOISY}
    noise = tuple(f"{kind}:{rate}" for kind in ("symmetric", "pairflip") for rate in (0.2, 0.4, 0.6))
    config.sweep.tune = {  # the published value and a stronger one: can more regularisation match regsl?
      "l2sp": (("reg.weight", (0.01, 0.1)),),
      "mars_sp": (("reg.radius", (1.0, 0.5)),),
      "label_smoothing": (("label_smoothing.eps", (0.1, 0.3)),),
      "delta": (("delta.alpha", (0.01, 0.1)),),
      "bss": (("bss.eta", (0.001, 0.01)),),
      "regsl": REGSL_GRID,
    }
  elif arg == "seeds":
    config.data.examples_per_class = 30
    config.run.log_every = 20  # 300 examples: 4 steps per epoch
    noise = ("pairflip:0.4", "symmetric:0.4")
    variants = {
      **PLAIN,
      "regsl": ("method=regsl",),
      "regsl_no_reweighting": ("method=regsl", "regsl.reweighting=False"),
      "regsl_aligned": ("method=regsl", "correction.align_prior=True"),
      "consistent": NOISY["consistent"],
    }
  elif arg is not None:
    raise ValueError(
      f"sweep_noisy_digits config argument {arg!r}; valid: none, 'ablation', 'settings', 'full', 'tuned', "
      "'tuned_full', 'seeds'"
    )
  config.sweep.variants = variants
  config.sweep.order = tuple(variants)  # tables list the variants in this order
  config.sweep.datasets = ("digits",)
  config.sweep.noise = noise
  config.sweep.seeds = (0, 1, 2, 3, 4) if arg == "seeds" else (0, 1, 2)
  # Claim (c) under noise: `--config.sweep.measure=True` measures seed 0 of every cell (docs/methods.md §4).
  config.sweep.measure = False
  config.sweep.measure_seeds = (0,)
  config.sweep.measure_settings = SWEEP_MEASURE_SETTINGS
  if config.data.validation_fraction > 0:  # a tuned sweep reports the model selected on validation: measure that one
    config.sweep.measure_settings = dict(SWEEP_MEASURE_SETTINGS, checkpoint="selected")
  return config
