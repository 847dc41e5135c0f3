"""Fine-tune a Vision Transformer: AdamW, linear warm-up, cosine decay, gradient clipping at global norm 1.

Default (no argument): ViT-B/16 at 224x224 on an image folder, as the ViT papers fine-tune (batch 64 here).
Weights and data are one field each:

  python -m experiments.finetune --workdir workdirs/vit_b16 --config experiments/configs/vit.py \
      --config.model.name=auto --config.model.pretrained=/path/to/ViT-B_16.npz \
      --config.data.dir=/path/to/image_folder

`model.name=auto` takes the variant, pooling, image size and input normalisation from the file (a vit_jax or
AugReg .npz, or a timm ViT .safetensors / .pth); without it the default's vit_b16 with the vit_jax normalisation
is used, and `data.image_size` may differ from the checkpoint's (its position embedding is resized). On a GPU or
TPU add `--config.model.dtype=bfloat16`.

`:tiny`: the shipped Fashion-MNIST ViT (fashion_mnist_vit_tiny, 87% test accuracy) fine-tuned on scikit-learn's
digits, offline in about 20 s on a CPU (98% test accuracy). `:pretrain_tiny`: the run that made that source model
(20 epochs, about 8 minutes on 2 CPU cores):

  python -m experiments.pretrain --config experiments/configs/vit.py:pretrain_tiny --workdir workdirs/vit_src \
      --export ftjax/pretrained_weights/fashion_mnist_vit_tiny.msgpack
"""

import ml_collections

from experiments.configs import default
from ftjax.models import vit_import

VARIANTS = ("b16", "tiny", "pretrain_tiny")


def _vit_optimiser(config: ml_collections.ConfigDict, learning_rate: float) -> None:
  """AdamW at `learning_rate` with weight decay 0.05, one epoch of warm-up, cosine decay, clipping at norm 1."""
  config.optim.name = "adamw"
  config.optim.learning_rate = learning_rate
  config.optim.weight_decay = 0.05
  config.optim.lr_schedule = "cosine"
  config.optim.warmup_epochs = 1.0
  config.optim.grad_clip_norm = 1.0
  config.optim.batch_size = 64


def _tiny(config: ml_collections.ConfigDict) -> None:
  """vit_tiny on 28x28 grey images (7x7 patches of 4x4 and a class token), inputs scaled to [-1, 1]."""
  config.model.name = "vit_tiny"
  config.data.image_size = 28
  config.data.channels = 1
  config.data.mean = (0.5,)
  config.data.std = (0.5,)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant = arg or "b16"
  if variant not in VARIANTS:
    raise ValueError(f"vit config argument {arg!r}; valid: none, {', '.join(repr(v) for v in VARIANTS)}")
  config = default.get_config()
  if variant == "b16":
    config.model.name = "vit_b16"
    config.model.pretrained = "none"  # set to a ViT-B/16 .npz (vit_jax, AugReg) or timm file, with model.name=auto
    config.data.name = "image_folder"  # set data.dir to its root
    config.data.image_size = 224
    config.data.channels = 3
    config.data.mean = vit_import.JAX_VIT_NORMALIZATION["mean"]
    config.data.std = vit_import.JAX_VIT_NORMALIZATION["std"]
    config.data.crop_padding = 16
    config.data.flip = True
    _vit_optimiser(config, learning_rate=1e-4)
    config.optim.num_epochs = 10
    config.optim.eval_batch_size = 128
    config.run.checkpoint_every = 500
    config.run.log_every = 20
  elif variant == "tiny":
    _tiny(config)
    config.model.pretrained = "fashion_mnist_vit_tiny"
    _vit_optimiser(config, learning_rate=5e-3)
    config.optim.num_epochs = 20
  else:
    _tiny(config)
    config.model.pretrained = "none"
    config.data.name = "fashion_mnist"
    config.data.flip = True
    _vit_optimiser(config, learning_rate=2e-3)
    config.optim.batch_size = 128
    config.optim.num_epochs = 20
    config.run.checkpoint_every = 500
    config.run.log_every = 100
  return config
