"""Fine-tune a torchvision ResNet (ImageNet weights as .safetensors or .pth) on a real image dataset.

  python -m experiments.finetune --workdir workdirs/caltech256 --config experiments/configs/torchvision.py \
      --config.model.pretrained=/path/to/resnet50.safetensors --config.data.name=image_folder \
      --config.data.dir=/path/to/256_ObjectCategories

The variant argument picks the depth: `--config experiments/configs/torchvision.py:resnet18`.
"""

from experiments.configs import default
from ftjax import config_layout
from ftjax.models import torchvision_import


def architecture(model: str = "resnet50") -> dict:
  """{config field: value}: what a torchvision ImageNet ResNet needs (model, stem, input size, normalisation)
  and the augmentation that suits 224-pixel images."""
  source = {"model": model, **torchvision_import.IMAGENET_ARCHITECTURE}
  fields = {config_layout.ARCHITECTURE_FIELDS[key]: value for key, value in source.items()}
  return {**fields, "data.crop_padding": 16, "data.flip": True}


def get_config(arg: str | None = None):
  config = default.get_config()
  config.update_from_flattened_dict(architecture(arg or "resnet50"))
  config.model.pretrained = "none"  # set to the torchvision state dict (.safetensors / .pth)
  config.data.name = "image_folder"
  config.optim.num_epochs = 30
  config.optim.batch_size = 64
  config.optim.learning_rate = 0.01
  config.optim.weight_decay = 1e-4
  config.run.checkpoint_every = 500
  config.run.log_every = 20
  return config
