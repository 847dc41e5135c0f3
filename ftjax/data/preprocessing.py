"""Numpy preprocessing of uint8 image batches: resize, channel conversion, augmentation, normalisation.

`Preprocess` is the image side of the pipeline's inputs protocol (`fit_source`, `batch_inputs`); the text side
is `ftjax.data.text_preprocessing.TextPreprocess`.

`fit_images` (resize + channels, uint8 -> uint8) is deterministic and per image, so an in-memory
source can be fitted once and later batches skip it; `preprocess` gives the same result either way.
"""

import dataclasses
from typing import NamedTuple

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LUMINANCE = (0.299, 0.587, 0.114)  # ITU-R 601, as PIL's RGB -> L


@dataclasses.dataclass(frozen=True)
class Preprocess:
  """image_size: output side S (None: keep the source's H x W);
  channels: 1 or 3; mean / std: per channel on the 0..1 scale (length 1 or `channels`);
  crop_padding: random S x S crop after zero-padding by this many pixels (0: off);
  flip: random horizontal flip. Augmentation applies only when a batch gets an rng."""

  image_size: int | None = None
  channels: int = 3
  mean: tuple[float, ...] = (0.0,)
  std: tuple[float, ...] = (1.0,)
  crop_padding: int = 0
  flip: bool = False

  def __post_init__(self):
    if self.channels not in (1, 3):
      raise ValueError(f"channels={self.channels} must be 1 or 3")
    for field in ("mean", "std"):
      if len(getattr(self, field)) not in (1, self.channels):
        raise ValueError(f"{field}={getattr(self, field)} must have 1 or channels={self.channels} entries")
    if self.crop_padding < 0:
      raise ValueError(f"crop_padding={self.crop_padding} must be >= 0")
    if self.image_size is not None and self.image_size < 1:
      raise ValueError(f"image_size={self.image_size} must be positive")

  def fit_source(self, source):
    """`source` with in-memory images (an ArraySource's `pixels`) fitted once (`fit_images`; a no-op when they
    already fit); lazily decoded sources are returned as they are and fitted per batch."""
    if getattr(source, "pixels", None) is None:
      return source
    return dataclasses.replace(source, pixels=fit_images(source.pixels, self))

  def batch_inputs(self, source, indices: np.ndarray, rows: slice, rng: np.random.Generator | None) -> dict:
    """{'image': float32 [k, S, S, channels]}: the `rows` of the global batch of examples `indices`, preprocessed,
    augmented with draws made for the whole global batch from `rng` (None: not augmented)."""
    augmentation = None
    if rng is not None:
      drawn = sample_augmentation(self, len(indices), rng)
      augmentation = Augmentation(drawn.crop_offsets[rows], drawn.flips[rows])
    return {"image": preprocess_with(source.images(indices[rows]), self, augmentation)}


class Augmentation(NamedTuple):
  """Per-image draws: crop_offsets int [k, 2] (top, left in the padded image, 0..2*padding);
  flips bool [k]."""

  crop_offsets: np.ndarray
  flips: np.ndarray


def resize(images: np.ndarray, size: int) -> np.ndarray:
  """uint8 [k, H, W, C] -> uint8 [k, size, size, C] by PIL bilinear resampling of each channel."""
  if images.shape[1:3] == (size, size):
    return images
  out = np.empty((len(images), size, size, images.shape[3]), np.uint8)
  for i, image in enumerate(images):
    for c in range(images.shape[3]):
      out[i, :, :, c] = np.asarray(Image.fromarray(image[:, :, c]).resize((size, size), Image.BILINEAR))
  return out


def convert_channels(images: np.ndarray, channels: int) -> np.ndarray:
  """uint8 [k, H, W, C] -> uint8 [k, H, W, channels]: grayscale replicated, RGB to luminance."""
  have = images.shape[3]
  if have == channels:
    return images
  if have == 1 and channels == 3:
    return np.repeat(images, 3, axis=3)
  if have == 3 and channels == 1:
    luminance = images.astype(np.float32) @ np.asarray(LUMINANCE, np.float32)
    return np.round(luminance).clip(0, 255).astype(np.uint8)[..., None]
  raise ValueError(f"cannot convert images with {have} channels to channels={channels}")


def fit_images(images: np.ndarray, config: Preprocess) -> np.ndarray:
  """uint8 [k, H, W, C] -> uint8 [k, S, S, channels]; a no-op on already fitted images."""
  if config.image_size is not None:
    images = resize(images, config.image_size)
  return convert_channels(images, config.channels)


def sample_augmentation(config: Preprocess, num_images: int, rng: np.random.Generator) -> Augmentation:
  """Crop offsets (drawn first, if crop_padding > 0) and flips (if flip) for `num_images` images."""
  pad = config.crop_padding
  offsets = rng.integers(0, 2 * pad + 1, size=(num_images, 2)) if pad else np.zeros((num_images, 2), np.int64)
  flips = rng.random(num_images) < 0.5 if config.flip else np.zeros(num_images, bool)
  return Augmentation(offsets, flips)


def augment(images: np.ndarray, padding: int, augmentation: Augmentation) -> np.ndarray:
  """float [k, S, S, C]: each image zero-padded by `padding`, cropped back to S x S at its offset,
  then flipped left-right where its flip is set."""
  if padding:
    k, size = images.shape[:2]
    padded = np.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    rows = augmentation.crop_offsets[:, 0, None] + np.arange(size)  # [k, S]
    cols = augmentation.crop_offsets[:, 1, None] + np.arange(size)
    images = padded[np.arange(k)[:, None, None], rows[:, :, None], cols[:, None, :]]
  return np.where(augmentation.flips[:, None, None, None], images[:, :, ::-1], images)


def preprocess_with(images: np.ndarray, config: Preprocess, augmentation: Augmentation | None) -> np.ndarray:
  """uint8 [k, H, W, C] -> float32 [k, S, S, channels]: fit, scale to 0..1, augment (unless
  `augmentation` is None), then (x - mean) / std."""
  x = fit_images(images, config).astype(np.float32) / 255.0
  if augmentation is not None:
    x = augment(x, config.crop_padding, augmentation)
  mean = np.asarray(config.mean, np.float32)
  std = np.asarray(config.std, np.float32)
  return ((x - mean) / std).astype(np.float32)


def preprocess(images: np.ndarray, config: Preprocess, rng: np.random.Generator | None = None) -> np.ndarray:
  """uint8 [k, H, W, C] -> float32 [k, S, S, channels]; random crop / flip drawn from `rng` when
  one is given (training), none otherwise."""
  augmentation = None if rng is None else sample_augmentation(config, len(images), rng)
  return preprocess_with(images, config, augmentation)
