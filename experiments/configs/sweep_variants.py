"""Method variants the sweep configs share: {name: ('field=value', ...) overrides of the base config}.

Radii and weights are the ones the README's tables were made with; the distance ones sit below the
layer distances plain fine-tuning of the shipped source reaches (Frobenius: 0.2 to 0.5 on
Fashion-MNIST, 0.3 to 2.3 on digits; the head 4.5 to 6.3).
"""

import ml_collections

PLAIN = {"plain": ("method=none",)}

# experiments.measure settings for measuring whole sweeps (docs/methods.md §4): one 128-example batch and 10
# probes per run keep a measurement near a minute on 2 CPU cores.
SWEEP_MEASURE_SETTINGS = dict(
  num_probes=10, max_batches=1, batch_size=128, eigen_iterations=5, lanczos_steps=5, noise_draws=2, density_steps=10
)

DISTANCE = {
  # L2-SP [Li et al. 2018]: λ Σ ||W_i - W_i^(s)||² + λ_head ||W_head||².
  "l2sp": ("method=l2sp", "reg.weight=0.01", "reg.head_weight=0.01"),
  # MARS-SP [GHP21]: MARS projection, one radius for every convolutional layer and one for the head.
  "mars_sp": ("method=constraint", "reg.norm=mars", "reg.radius=1.0", "reg.gamma=1.0", "reg.head_radius=10.0"),
  # Layer-wise Frobenius constraint with radii growing with depth [LZ21].
  "layerwise": ("method=constraint", "reg.norm=frobenius", "reg.radius=0.1", "reg.gamma=1.5", "reg.head_radius=3.0"),
}

BASELINES = {
  "label_smoothing": ("method=label_smoothing",),
  "delta": ("method=delta",),
  "bss": ("method=bss",),
}

NOISY = {
  "regsl": ("method=regsl",),  # [LZ21]: constraint + label correction + reweighting
  "consistent": ("method=consistent",),  # [JLZ22]: constraint + forward-corrected loss, dual-T estimate
}

# MARS-SP and the layer-wise constraint for the model-family sweeps, their radius left to `sweep.tune`.
UNTUNED_RADIUS_DISTANCE = {
  "mars_sp": ("method=constraint", "reg.norm=mars", "reg.gamma=1.0", "reg.head_radius=10.0"),
  "layerwise": ("method=constraint", "reg.norm=frobenius", "reg.gamma=1.5", "reg.head_radius=3.0"),
}


def validated_noisy_sweep(
  config: ml_collections.ConfigDict, variants: dict, tune: dict, dataset: str
) -> ml_collections.ConfigDict:
  """`config` with 10% of its training split held out for validation and a sweep of `variants` ({name:
  overrides}, tables in this order) on `dataset` at 40% symmetric noise, 3 seeds, `tune` selecting on validation;
  nothing measured."""
  config.data.validation_fraction = 0.1
  config.sweep = ml_collections.ConfigDict()
  config.sweep.only = ""  # e.g. --config.sweep.only=plain,regsl; "" = every variant
  config.sweep.variants = variants
  config.sweep.order = tuple(variants)
  config.sweep.tune = tune
  config.sweep.datasets = (dataset,)
  config.sweep.noise = ("symmetric:0.4",)
  config.sweep.seeds = (0, 1, 2)
  config.sweep.measure = False
  config.sweep.measure_seeds = (0,)
  config.sweep.measure_settings = {}
  return config
