"""Fine-tune a torchvision ResNet (ImageNet weights as .safetensors or .pth) on a real image dataset.

  python -m experiments.finetune --workdir workdirs/caltech256 --config experiments/configs/torchvision.py \
      --config.pretrained=/path/to/resnet50.safetensors --config.dataset=image_folder \
      --config.data_dir=/path/to/256_ObjectCategories

The variant argument picks the depth: `--config experiments/configs/torchvision.py:resnet18`.
"""

from experiments.configs import default
from ftjax.models import torchvision_import


def architecture(model: str = "resnet50") -> dict:
  """The config fields a torchvision ImageNet ResNet needs (model, stem, input size, normalisation)
  and the augmentation that suits 224-pixel images."""
  return dict(model=model, **torchvision_import.IMAGENET_ARCHITECTURE, crop_padding=16, flip=True)


def get_config(arg: str | None = None):
  config = default.get_config()
  config.update(architecture(arg or "resnet50"))
  config.pretrained = "none"  # set to the torchvision state dict (.safetensors / .pth)
  config.dataset = "image_folder"
  config.num_epochs = 30
  config.batch_size = 64
  config.learning_rate = 0.01
  config.weight_decay = 1e-4
  config.checkpoint_every = 500
  config.log_every = 20
  return config
