"""ResNet-18/34/50/101 (torchvision layout, v1.5 strides) with an ImageNet or small-image stem.

Parameter paths: 'stem/conv', 'stem/bn', 'stage{1..4}/block{k}/{conv1,bn1,conv2,bn2[,conv3,bn3],
downsample_conv,downsample_bn}', 'head'. `STRUCTURE` declares its layer groups (docs/methods.md §1) over these
paths, its head and its feature maps.
"""

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from ftjax.models.structure import ModelStructure

STEMS = ("imagenet", "small")
STRUCTURE = ModelStructure(
  groups=(
    (r"stem/.*", "stem"),
    (r"stage1/.*", "stage1"),
    (r"stage2/.*", "stage2"),
    (r"stage3/.*", "stage3"),
    (r"stage4/.*", "stage4"),
    (r"head/.*", "head"),
  ),
  head="head",
  feature_maps=("stage1", "stage2", "stage3", "stage4"),
  penultimate="penultimate",
)


def _conv(features: int, kernel: int, stride: int, name: str, dtype: DTypeLike) -> nn.Conv:
  """A bias-free conv with torch's symmetric padding (kernel - 1) // 2, computing in `dtype`."""
  pad = (kernel - 1) // 2
  return nn.Conv(
    features,
    (kernel, kernel),
    (stride, stride),
    padding=((pad, pad), (pad, pad)),
    use_bias=False,
    kernel_init=nn.initializers.variance_scaling(2.0, "fan_out", "normal"),
    dtype=dtype,
    name=name,
  )


class BasicBlock(nn.Module):
  """Two 3x3 convs with an identity (or 1x1 projected) shortcut; output width `features`."""

  features: int
  stride: int
  norm: functools.partial
  dtype: DTypeLike = jnp.float32

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(_conv, dtype=self.dtype)
    y = nn.relu(self.norm(name="bn1")(conv(self.features, 3, self.stride, "conv1")(x)))
    y = self.norm(name="bn2", scale_init=nn.initializers.zeros)(conv(self.features, 3, 1, "conv2")(y))
    if x.shape[-1] != self.features or self.stride != 1:
      x = self.norm(name="downsample_bn")(conv(self.features, 1, self.stride, "downsample_conv")(x))
    return nn.relu(x + y)


class Bottleneck(nn.Module):
  """1x1 reduce, 3x3 (strided), 1x1 expand to 4 * `features`, with a shortcut."""

  features: int
  stride: int
  norm: functools.partial
  dtype: DTypeLike = jnp.float32

  @nn.compact
  def __call__(self, x):
    out = self.features * 4
    conv = functools.partial(_conv, dtype=self.dtype)
    y = nn.relu(self.norm(name="bn1")(conv(self.features, 1, 1, "conv1")(x)))
    y = nn.relu(self.norm(name="bn2")(conv(self.features, 3, self.stride, "conv2")(y)))
    y = self.norm(name="bn3", scale_init=nn.initializers.zeros)(conv(out, 1, 1, "conv3")(y))
    if x.shape[-1] != out or self.stride != 1:
      x = self.norm(name="downsample_bn")(conv(out, 1, self.stride, "downsample_conv")(x))
    return nn.relu(x + y)


class Stem(nn.Module):
  """'imagenet': 7x7/2 conv, BN, ReLU, 3x3/2 max-pool; 'small': 3x3/1 conv, BN, ReLU."""

  features: int
  kind: str
  norm: functools.partial
  dtype: DTypeLike = jnp.float32

  @nn.compact
  def __call__(self, x):
    if self.kind == "imagenet":
      x = nn.relu(self.norm(name="bn")(_conv(self.features, 7, 2, "conv", self.dtype)(x)))
      return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    return nn.relu(self.norm(name="bn")(_conv(self.features, 3, 1, "conv", self.dtype)(x)))


class Stage(nn.Module):
  """`num_blocks` residual blocks named 'block{k}'; the first one strides."""

  block_cls: type
  num_blocks: int
  features: int
  stride: int
  norm: functools.partial
  dtype: DTypeLike = jnp.float32

  @nn.compact
  def __call__(self, x):
    for b in range(self.num_blocks):
      x = self.block_cls(self.features, self.stride if b == 0 else 1, self.norm, self.dtype, name=f"block{b}")(x)
    return x


class ResNet(nn.Module):
  """images [batch, height, width, channels] -> logits [batch, num_classes]; with
  `return_features`, also {'stem', 'stage1'..'stage4', 'penultimate'} activations. Convolutions, BatchNorm
  outputs and the head compute in `dtype` (e.g. bfloat16) with float32 parameters; BatchNorm statistics stay
  float32, and logits and features are returned as float32."""

  stage_sizes: Sequence[int]
  bottleneck: bool
  num_classes: int
  width: int = 64
  stem: str = "imagenet"
  dtype: DTypeLike = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False):
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype)
    block_cls = Bottleneck if self.bottleneck else BasicBlock
    features = {"stem": Stem(self.width, self.stem, norm, self.dtype, name="stem")(x)}
    x = features["stem"]
    for s, num_blocks in enumerate(self.stage_sizes):
      stride = 2 if s > 0 else 1
      x = Stage(block_cls, num_blocks, self.width * 2**s, stride, norm, self.dtype, name=f"stage{s + 1}")(x)
      features[f"stage{s + 1}"] = x
    x = jnp.mean(x, axis=(1, 2))
    features["penultimate"] = x
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)
    logits, features = jax.tree.map(lambda y: y.astype(jnp.float32), (logits, features))
    return (logits, features) if return_features else logits
