"""The shipped source model: ResNet-18 (width 16, small-image stem) trained from scratch on the
full Fashion-MNIST (60,000 images) by `python -m experiments.pretrain`."""

from experiments.configs import default


def get_config(arg: str | None = None):
  config = default.get_config(arg)
  config.dataset = "fashion_mnist"
  config.pretrained = "none"
  config.flip = True
  config.num_epochs = 4
  config.batch_size = 128
  config.learning_rate = 0.1
  config.weight_decay = 5e-4
  config.checkpoint_every = 500
  config.log_every = 100
  return config
