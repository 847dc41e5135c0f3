"""The default run: fine-tune the shipped Fashion-MNIST ResNet-18 on scikit-learn's digits.

Every field that `experiments.finetune` reads is defined here; other configs start from this one.
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  config = ml_collections.ConfigDict()

  # Data (ftjax.data): 'digits', 'fashion_mnist', 'mnist', 'image_folder' or 'tfds:NAME'.
  config.dataset = "digits"
  config.data_dir = ""           # '' = the dataset's default location
  config.num_classes = 0         # 0 = the dataset's class count; otherwise must equal it
  config.test_fraction = 0.2     # held-out split for datasets without a test split
  config.examples_per_class = 0  # 0 = every training example; k = a seeded k-per-class subset
  config.image_size = 28
  config.channels = 1
  config.mean = (0.5,)
  config.std = (0.5,)
  config.crop_padding = 2
  config.flip = False

  # Model (ftjax.models) and its source weights (ftjax.models.pretrained).
  config.model = "resnet18"
  config.width = 16              # channels of the first stage (torchvision ResNets: 64)
  config.stem = "small"          # 'imagenet' (7x7/2 + max-pool) or 'small' (3x3/1)
  config.pretrained = "fashion_mnist_resnet18"

  # Optimisation (ftjax.optim).
  config.num_epochs = 20
  config.batch_size = 64         # global, over every device of every process
  config.eval_batch_size = 256
  config.optimizer = "sgd"       # 'sgd', 'adam', 'adamw'
  config.learning_rate = 0.05
  config.momentum = 0.9
  config.nesterov = True
  config.weight_decay = 0.0
  config.lr_schedule = "cosine"  # 'constant', 'cosine', 'step'
  config.lr_decay_epochs = ()    # for 'step': ×0.1 at each
  config.warmup_epochs = 0.0

  # Method (ftjax.methods.registry).
  config.method = "none"

  # Bookkeeping.
  config.seed = 0
  config.checkpoint_every = 200  # steps; a checkpoint is also written at the end
  config.log_every = 50          # steps
  config.eval_every = 0          # epochs; 0 = only at the end
  return config
