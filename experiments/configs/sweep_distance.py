"""Claims (a) and (c): distance-regularised fine-tuning against plain fine-tuning on small targets
([GHP21], [LZ21]), with every run's Hessian measures and bound beside its measured gap ([JLZ22]).

  python -m experiments.sweep --workdir workdirs/distance --config experiments/configs/sweep_distance.py

Targets: 10 labelled examples per class of Fashion-MNIST (the source's domain) and of the digits;
3 seeds. With a GPU and real data, one field each picks the weights and the dataset:
`--config.model.pretrained=/path/resnet50.safetensors --config.sweep.datasets="('tfds:caltech101',)"`
(`model='auto'` takes the ResNet-50 architecture and ImageNet input format from the weights;
`--config.data.crop_padding=16 --config.data.flip=True` suit 224-pixel images).

`:tuned` is the honest comparison: 15 labelled examples per class, 5 of each class held out for validation (so 10
train, as above); each regulariser's strength chosen on validation from two settings (L2-SP's weight, MARS-SP's
radius, the layer-wise constraint's first-layer radius: the untuned value and a weaker one), every run reporting
its model selected on validation (evaluated every 10 epochs) and measured at that model (seed 0 of every
setting, so the bound-against-gap plot has a point per setting).
"""

import ml_collections

from experiments.configs import default
from experiments.configs.sweep_variants import DISTANCE, PLAIN, SWEEP_MEASURE_SETTINGS


def get_config(arg: str | None = None):
  if arg not in (None, "tuned"):
    raise ValueError(f"sweep_distance config argument {arg!r}; valid: none, 'tuned'")
  config = default.get_config()
  config.model.name = "auto"  # the source's architecture and input format: a new `pretrained` is one field
  config.data.examples_per_class = 10
  config.optim.num_epochs = 50
  config.run.log_every = 10  # 100 examples: one step per epoch, so 5 progress lines per run
  config.sweep = ml_collections.ConfigDict()
  config.sweep.only = ""  # e.g. --config.sweep.only=plain,regsl; "" = every variant
  config.sweep.variants = {**PLAIN, **DISTANCE}
  config.sweep.order = (*PLAIN, *DISTANCE)  # tables list the variants in this order
  config.sweep.datasets = ("fashion_mnist", "digits")
  config.sweep.noise = ("none",)
  config.sweep.seeds = (0, 1, 2)
  config.sweep.measure = True
  config.sweep.measure_seeds = (0,)  # claim (c) compares methods; one seed each keeps it to minutes
  config.sweep.measure_settings = SWEEP_MEASURE_SETTINGS
  if arg == "tuned":
    config.data.examples_per_class = 15
    config.data.validation_fraction = 1 / 3
    config.run.eval_every = 10  # validation and test every 10 of the 50 epochs (Fashion-MNIST's test split is 10k)
    config.sweep.tune = {  # the untuned values above, and a weaker pull towards the source
      "l2sp": (("reg.weight", (0.001, 0.01)),),
      "mars_sp": (("reg.radius", (1.0, 2.0)),),
      "layerwise": (("reg.radius", (0.1, 0.2)),),
    }
    config.sweep.measure_settings = dict(SWEEP_MEASURE_SETTINGS, checkpoint="selected")
  return config
