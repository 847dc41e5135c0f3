"""The shipped source model: ResNet-18 (width 16, small-image stem) trained from scratch on the
full Fashion-MNIST (60,000 images) by `python -m experiments.pretrain`."""

from experiments.configs import default


def get_config(arg: str | None = None):
  config = default.get_config(arg)
  config.data.name = "fashion_mnist"
  config.model.pretrained = "none"
  config.data.flip = True
  config.optim.num_epochs = 4
  config.optim.batch_size = 128
  config.optim.learning_rate = 0.1
  config.optim.weight_decay = 5e-4
  config.run.checkpoint_every = 500
  config.run.log_every = 100
  return config
