"""Vision Transformer (Dosovitskiy et al. 2021) in the layout of the original JAX ViT (google-research/
vision_transformer, `vit_jax/models_vit.py`), so that its .npz checkpoints (and AugReg's) load by name.

Parameter paths ('params' collection; D = width, M = mlp_dim, H = num_heads, p = patch_size, C = channels):
  'embedding/{kernel [p, p, C, D], bias}'                       patch embedding (a stride-p conv)
  'cls' [1, 1, D]                                                class token (pooling 'cls' only)
  'Transformer/posembed_input/pos_embedding' [1, tokens, D]      learned, added after the class token is prepended
  'Transformer/encoderblock_{i}/LayerNorm_0/{scale, bias}'
  'Transformer/encoderblock_{i}/MultiHeadDotProductAttention_1/{query,key,value}/{kernel [D, H, D/H], bias [H, D/H]}'
  'Transformer/encoderblock_{i}/MultiHeadDotProductAttention_1/out/{kernel [H, D/H, D], bias [D]}'
  'Transformer/encoderblock_{i}/LayerNorm_2/{scale, bias}'
  'Transformer/encoderblock_{i}/MlpBlock_3/{Dense_0 [D, M], Dense_1 [M, D]}/{kernel, bias}'
  'Transformer/encoder_norm/{scale, bias}'
  'head/{kernel [D, classes], bias}'
`structure(depth)` declares their layer groups (docs/methods.md §1) and `ROLES` the role of each attention and MLP
kernel; `resize_position_embedding` adapts a position embedding to another image size.
"""

import functools
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from ftjax.models.structure import ModelStructure

POOLINGS = ("cls", "gap")  # the class token's output, or the mean over all tokens (no class token)
RESIZE_METHODS = ("bilinear", "bicubic")
# The constructor arguments beyond num_classes and the variant's fixed shape that a config may set.
OPTIONS = ("pooling", "dropout_rate", "stochastic_depth_rate", "approximate_gelu", "dtype")

# Named shapes: Ti, S, B, L as vit_jax, AugReg (Steiner et al. 2021) and big_vision's decode_variant define them, with
# their patch size; 'vit_tiny' is a 2-block ViT for 28x28 inputs (7x7 patches of 4x4) that runs in seconds on a CPU.
VARIANTS: dict[str, dict[str, int]] = {
  "vit_tiny": dict(width=32, depth=2, mlp_dim=64, num_heads=2, patch_size=4),
  "vit_ti16": dict(width=192, depth=12, mlp_dim=768, num_heads=3, patch_size=16),
  "vit_s16": dict(width=384, depth=12, mlp_dim=1536, num_heads=6, patch_size=16),
  "vit_b16": dict(width=768, depth=12, mlp_dim=3072, num_heads=12, patch_size=16),
  "vit_b32": dict(width=768, depth=12, mlp_dim=3072, num_heads=12, patch_size=32),
  "vit_l16": dict(width=1024, depth=24, mlp_dim=4096, num_heads=16, patch_size=16),
}

# (regex over parameter paths, role): the role of each attention and MLP weight tensor, so that a config can give
# a role its own radius or penalty weight within every block (first fullmatching pattern wins; the patch embedding
# and the head are groups of their own in `structure`).
ROLES = (
  (r"Transformer/encoderblock_\d+/MultiHeadDotProductAttention_1/(query|key|value|out)/kernel", "attention"),
  (r"Transformer/encoderblock_\d+/MlpBlock_3/Dense_[01]/kernel", "mlp"),
)
# (regex, leading input axes): query/key/value kernels [D, H, D/H] read the D inputs of axis 0 and feed H × D/H
# output units; every other kernel (the attention 'out' [H, D/H, D] included) reads all but its last axis.
FAN_IN = ((r"Transformer/encoderblock_\d+/MultiHeadDotProductAttention_1/(query|key|value)/kernel", 1),)


def structure(depth: int) -> ModelStructure:
  """The groups of a `depth`-block ViT in network order: 'embedding' (patch embedding, class token, position
  embedding), 'block{i}' (encoderblock_i; the final LayerNorm, which normalises the last block's output and holds
  no kernel, joins the last block), 'head'. Feature maps: the block outputs [batch, tokens, width]."""
  return ModelStructure(
    groups=(
      (r"embedding/.*|cls|Transformer/posembed_input/.*", "embedding"),
      *((rf"Transformer/encoderblock_{i}/.*", f"block{i}") for i in range(depth)),
      (r"Transformer/encoder_norm/.*", f"block{depth - 1}"),
      (r"head/.*", "head"),
    ),
    head="head",
    feature_maps=tuple(f"block{i}" for i in range(depth)),
    penultimate="penultimate",
    roles=ROLES,
    fan_in=FAN_IN,
  )


class MlpBlock(nn.Module):
  """Dense(mlp_dim), GELU, dropout, Dense(back to the input width), dropout; computed in `dtype`."""

  mlp_dim: int
  dropout_rate: float = 0.0
  approximate_gelu: bool = False
  dtype: DTypeLike = jnp.float32

  @nn.compact
  def __call__(self, x, deterministic: bool):
    inits = dict(
      kernel_init=nn.initializers.xavier_uniform(), bias_init=nn.initializers.normal(stddev=1e-6), dtype=self.dtype
    )
    y = nn.gelu(nn.Dense(self.mlp_dim, name="Dense_0", **inits)(x), approximate=self.approximate_gelu)
    y = nn.Dense(x.shape[-1], name="Dense_1", **inits)(nn.Dropout(self.dropout_rate)(y, deterministic))
    return nn.Dropout(self.dropout_rate)(y, deterministic)


class EncoderBlock(nn.Module):
  """Pre-LN transformer block: x + drop_path(dropout(attention(LN(x)))), then + drop_path(MLP(LN(x))), where
  drop_path is stochastic depth: the whole branch of an example zeroed with probability `drop_path_rate`, the
  kept ones scaled by 1 / (1 - rate)."""

  num_heads: int
  mlp_dim: int
  dropout_rate: float = 0.0
  drop_path_rate: float = 0.0
  approximate_gelu: bool = False
  dtype: DTypeLike = jnp.float32

  @nn.compact
  def __call__(self, x, deterministic: bool):
    drop_path = lambda y: nn.Dropout(self.drop_path_rate, broadcast_dims=(1, 2))(y, deterministic)
    y = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="LayerNorm_0")(x)
    y = nn.MultiHeadDotProductAttention(
      num_heads=self.num_heads,
      kernel_init=nn.initializers.xavier_uniform(),
      dtype=self.dtype,
      name="MultiHeadDotProductAttention_1",
    )(y, y)
    x = x + drop_path(nn.Dropout(self.dropout_rate)(y, deterministic))
    y = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="LayerNorm_2")(x)
    y = MlpBlock(self.mlp_dim, self.dropout_rate, self.approximate_gelu, self.dtype, name="MlpBlock_3")(
      y, deterministic
    )
    return x + drop_path(y)


class AddPositionEmbedding(nn.Module):
  """tokens [batch, tokens, width] + a learned 'pos_embedding' [1, tokens, width] (float32, added in x's dtype)."""

  @nn.compact
  def __call__(self, x):
    return x + self.param("pos_embedding", nn.initializers.normal(stddev=0.02), (1, *x.shape[1:])).astype(x.dtype)


class Encoder(nn.Module):
  """Position embedding and dropout, `depth` blocks (stochastic depth rising linearly from 0 at the first to
  `stochastic_depth_rate` at the last), final LayerNorm -> (normalised tokens, [each block's output])."""

  depth: int
  num_heads: int
  mlp_dim: int
  dropout_rate: float = 0.0
  stochastic_depth_rate: float = 0.0
  approximate_gelu: bool = False
  dtype: DTypeLike = jnp.float32

  @nn.compact
  def __call__(self, x, deterministic: bool):
    x = AddPositionEmbedding(name="posembed_input")(x)
    x = nn.Dropout(self.dropout_rate)(x, deterministic)
    outputs = []
    for i in range(self.depth):
      x = EncoderBlock(
        self.num_heads,
        self.mlp_dim,
        self.dropout_rate,
        self.stochastic_depth_rate * i / max(self.depth - 1, 1),
        self.approximate_gelu,
        self.dtype,
        name=f"encoderblock_{i}",
      )(x, deterministic)
      outputs.append(x)
    return nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="encoder_norm")(x), outputs


class ViT(nn.Module):
  """images [batch, height, width, channels] -> logits [batch, num_classes]; with `return_features`, also
  {'block0'..'block{depth-1}': [batch, tokens, width], 'penultimate': [batch, width]} (the block outputs and the
  pooled, normalised features the head reads). tokens = (height // patch_size) * (width // patch_size), plus one
  for the class token. Dropout and stochastic depth act only with `train`, drawing from the 'dropout' rng.
  GELU is exact (erf, as timm computes) unless `approximate_gelu` (tanh, as vit_jax and big_vision compute).
  The head starts at zero, as in vit_jax. Layers compute in `dtype` (e.g. bfloat16) with float32 parameters;
  logits and features are returned as float32."""

  num_classes: int
  width: int
  depth: int
  mlp_dim: int
  num_heads: int
  patch_size: int
  pooling: str = "cls"
  dropout_rate: float = 0.0
  stochastic_depth_rate: float = 0.0
  approximate_gelu: bool = False
  dtype: DTypeLike = jnp.float32

  @nn.compact
  def __call__(self, image, train: bool = False, return_features: bool = False):
    if self.pooling not in POOLINGS:
      raise ValueError(f"pooling={self.pooling!r} is not a ViT pooling; valid: {', '.join(POOLINGS)}")
    patch = (self.patch_size, self.patch_size)
    x = nn.Conv(self.width, patch, strides=patch, padding="VALID", dtype=self.dtype, name="embedding")(image)
    n, h, w, c = x.shape
    x = jnp.reshape(x, (n, h * w, c))
    if self.pooling == "cls":
      cls = self.param("cls", nn.initializers.zeros, (1, 1, c))
      x = jnp.concatenate([jnp.tile(cls.astype(x.dtype), (n, 1, 1)), x], axis=1)
    x, outputs = Encoder(
      self.depth,
      self.num_heads,
      self.mlp_dim,
      self.dropout_rate,
      self.stochastic_depth_rate,
      self.approximate_gelu,
      self.dtype,
      name="Transformer",
    )(x, deterministic=not train)
    x = x[:, 0] if self.pooling == "cls" else jnp.mean(x, axis=1)
    features = {f"block{i}": output for i, output in enumerate(outputs)}
    features["penultimate"] = x
    logits = nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros, dtype=self.dtype, name="head")(x)
    logits, features = jax.tree.map(lambda y: y.astype(jnp.float32), (logits, features))
    return (logits, features) if return_features else logits


def vit_family(variant: str) -> tuple[Callable[..., ViT], ModelStructure]:
  """(constructor taking num_classes= and `OPTIONS` as keywords, its `ModelStructure`) of the named variant."""
  if variant not in VARIANTS:
    raise ValueError(f"variant={variant!r} is not a ViT variant; valid: {', '.join(VARIANTS)}")
  shape = VARIANTS[variant]
  return functools.partial(ViT, **shape), structure(shape["depth"])


def resize_position_embedding(
  posemb, new_grid: int | tuple[int, int], has_class_token: bool, method: str = "bilinear"
) -> np.ndarray:
  """posemb [1, prefix + g*g, D] (a square grid of g*g patch entries after the class token's, prefix = 1 if
  `has_class_token` else 0) -> [1, prefix + h*w, D] float32 for the grid `new_grid` (h, w) or (n, n): the class
  token's entry kept, the grid interpolated with `jax.image.resize` (half-pixel centres, antialiased when shrinking).
  'bilinear' equals torch's F.interpolate(mode='bilinear', align_corners=False, antialias=True), which timm's .npz
  loader uses when enlarging (antialias=False gives the same when enlarging); 'bicubic' (Keys a=-0.5) equals
  F.interpolate(mode='bicubic', antialias=True), timm's resample_abs_pos_embed default. big_vision and vit_jax use
  scipy.ndimage.zoom(order=1), which aligns corners and matches neither."""
  if method not in RESIZE_METHODS:
    raise ValueError(f"method={method!r} is not a position-embedding resize method; valid: {', '.join(RESIZE_METHODS)}")
  posemb = np.asarray(posemb, np.float32)
  prefix = int(has_class_token)
  grid = round(np.sqrt(posemb.shape[1] - prefix)) if posemb.ndim == 3 else 0
  if posemb.ndim != 3 or posemb.shape[0] != 1 or grid * grid != posemb.shape[1] - prefix:
    raise ValueError(
      f"position embedding has shape {posemb.shape}; expected [1, {prefix} + g*g, width] for a square grid g*g"
      f"{' after the class token' if has_class_token else ''}"
    )
  new_grid = (new_grid, new_grid) if isinstance(new_grid, int) else tuple(new_grid)
  width = posemb.shape[-1]
  patches = jax.image.resize(posemb[0, prefix:].reshape(grid, grid, width), (*new_grid, width), method=method)
  return np.concatenate([posemb[:, :prefix], np.asarray(patches).reshape(1, -1, width)], axis=1)
