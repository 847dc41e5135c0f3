"""A small CNN for fast experiments and tests: two conv-BN-ReLU-pool stages, a dense layer, a head.

Parameter paths: 'conv1', 'bn1', 'conv2', 'bn2', 'dense', 'head'; `STRUCTURE` declares their groups.
"""

import flax.linen as nn
import jax.numpy as jnp

from ftjax.models.structure import ModelStructure

STRUCTURE = ModelStructure(
  groups=((r"conv1/.*", "stage1"), (r"conv2/.*", "stage2"), (r"dense/.*", "stage3"), (r"head/.*", "head")),
  head="head",
  feature_maps=("stage1", "stage2"),
  penultimate="penultimate",
)


class SmallCNN(nn.Module):
  """images [batch, height, width, channels] -> logits [batch, num_classes]; with
  `return_features`, also {'stage1', 'stage2', 'penultimate'} activations."""

  num_classes: int
  width: int = 16

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False):
    features = {}
    for i in (1, 2):
      x = nn.Conv(self.width * i, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, name=f"conv{i}")(x)
      x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9, name=f"bn{i}")(x))
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
      features[f"stage{i}"] = x
    x = nn.relu(nn.Dense(self.width * 4, name="dense")(jnp.mean(x, axis=(1, 2))))
    features["penultimate"] = x
    logits = nn.Dense(self.num_classes, name="head")(x)
    return (logits, features) if return_features else logits
