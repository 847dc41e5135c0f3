"""Claims (a) and (c): distance-regularised fine-tuning against plain fine-tuning on small targets
([GHP21], [LZ21]), with every run's Hessian measures and bound beside its measured gap ([JLZ22]).

  python -m experiments.sweep --workdir workdirs/distance --config experiments/configs/sweep_distance.py

Targets: 10 labelled examples per class of Fashion-MNIST (the source's domain) and of the digits;
3 seeds. With a GPU and real data, `:resnet50` switches to a torchvision ImageNet ResNet-50, and
then one field each picks the weights and the dataset:
`--config.pretrained=/path/resnet50.safetensors --config.sweep.datasets="('tfds:caltech101',)"`.
"""

import ml_collections

from experiments.configs import default, torchvision
from experiments.configs.sweep_variants import DISTANCE, PLAIN


def get_config(arg: str | None = None):
  config = default.get_config()
  if arg:
    config.update(torchvision.architecture(arg))
    config.pretrained = "none"  # set to the torchvision state dict
  config.examples_per_class = 10
  config.num_epochs = 50
  config.log_every = 1000
  config.sweep = ml_collections.ConfigDict()
  config.sweep.variants = {**PLAIN, **DISTANCE}
  config.sweep.datasets = ("fashion_mnist", "digits")
  config.sweep.noise = ("none",)
  config.sweep.seeds = (0, 1, 2)
  config.sweep.measure = True
  config.sweep.measure_seeds = (0,)  # claim (c) compares methods; one seed each keeps it to minutes
  config.sweep.measure_settings = dict(num_probes=10, max_batches=1, batch_size=128, eigen_iterations=5,
                                       lanczos_steps=5, noise_draws=2)
  return config
