"""Fine-tune a torchvision ResNet (ImageNet weights as .safetensors or .pth) on a real image dataset.

  python -m experiments.finetune --workdir workdirs/caltech256 --config experiments/configs/torchvision.py \
      --config.pretrained=/path/to/resnet50.safetensors --config.dataset=image_folder \
      --config.data_dir=/path/to/256_ObjectCategories

The variant argument picks the depth: `--config experiments/configs/torchvision.py:resnet18`.
"""

from experiments.configs import default


def get_config(arg: str | None = None):
  config = default.get_config()
  config.model = arg or "resnet50"
  config.width = 64
  config.stem = "imagenet"
  config.pretrained = "none"     # set to the torchvision state dict (.safetensors / .pth)
  config.dataset = "image_folder"
  config.image_size = 224
  config.channels = 3
  config.mean = (0.485, 0.456, 0.406)
  config.std = (0.229, 0.224, 0.225)
  config.crop_padding = 16
  config.flip = True
  config.num_epochs = 30
  config.batch_size = 64
  config.learning_rate = 0.01
  config.weight_decay = 1e-4
  config.checkpoint_every = 500
  config.log_every = 20
  return config
