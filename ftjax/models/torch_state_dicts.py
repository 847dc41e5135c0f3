"""PyTorch state dicts in files (.safetensors, or .pth/.pt written by torch.save) as numpy arrays, read without
PyTorch where the format allows: a .safetensors file's keys and shapes come from its header alone, its tensors
through safetensors' numpy reader; a .pth/.pt file needs torch (imported only then, loaded with weights_only=True).

A checkpoint that wraps its state dict under 'state_dict' or 'model' is unwrapped, and DataParallel's 'module.'
prefix is stripped. Every file that holds no state dict is a one-line ValueError naming it. A .pth/.pt file's
shapes are kept until it changes, so that checking a file more than once loads it once.
"""

import functools
import os
import re
from typing import Mapping

import numpy as np

SUFFIXES = (".safetensors", ".pth", ".pt")
VALID = "a PyTorch state dict saved with safetensors (.safetensors) or torch.save (.pth/.pt)"


def check_suffix(path: str) -> None:
  """A one-line ValueError unless `path` ends in one of `SUFFIXES`."""
  if not path.endswith(SUFFIXES):
    raise ValueError(
      f"{path!r} has an unsupported extension {os.path.splitext(path)[1]!r}; expected one of {', '.join(SUFFIXES)}"
    )


def unreadable(path: str, kind: str, error: Exception) -> ValueError:
  """The one-line error for a file at `path` that is no readable `kind` (its error's first sentence)."""
  detail = re.split(r"(?<=\.)\s", (str(error).strip().splitlines() or [""])[0])[0][:120]
  return ValueError(
    f"pretrained file {path!r} is not a readable {kind} ({type(error).__name__}: {detail}); valid: {VALID}"
  )


def _torch_state_dict(path: str) -> dict:
  """The {key: torch.Tensor} state dict in a .pth/.pt file."""
  try:
    import torch
  except ImportError:
    raise ImportError(f"reading {path!r} (.pth/.pt) needs `pip install torch`; a .safetensors file does not") from None
  try:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for a damaged file
    raise unreadable(path, ".pth/.pt file", e) from e
  if not isinstance(checkpoint, Mapping):
    raise ValueError(
      f"pretrained file {path!r} holds a {type(checkpoint).__name__}, not a state dict; valid: a .pth/.pt file of a "
      "model.state_dict() (a dict of tensors, or one under 'state_dict'/'model')"
    )
  state_dict = next(
    (checkpoint[k] for k in ("state_dict", "model") if isinstance(checkpoint.get(k), Mapping)), checkpoint
  )
  not_tensor = next((key for key, value in state_dict.items() if not isinstance(value, torch.Tensor)), None)
  if not_tensor is not None:
    raise ValueError(
      f"pretrained file {path!r}: entry {not_tensor!r} is a {type(state_dict[not_tensor]).__name__}, not a "
      "tensor; valid: a model.state_dict() (a dict of tensors)"
    )
  return {key.removeprefix("module."): value for key, value in state_dict.items()}


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """{key: numpy array} of the state dict at `path`; floating tensors as float32, others as they are."""
  path = os.fspath(path)
  check_suffix(path)
  if path.endswith(".safetensors"):
    from safetensors.numpy import load_file

    try:
      arrays = load_file(path)
    except Exception as e:  # safetensors raises its own SafetensorError (and others) for a damaged file
      raise unreadable(path, ".safetensors file", e) from e
    return {key: value.astype(np.float32) if value.dtype.kind == "f" else value for key, value in arrays.items()}
  return {
    key: (value.float() if value.is_floating_point() else value).numpy()
    for key, value in _torch_state_dict(path).items()
  }


def read_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
  """{key: shape} of the state dict at `path` (a .safetensors file's from its header alone)."""
  path = os.fspath(path)
  check_suffix(path)
  if not path.endswith(".safetensors"):
    stat = os.stat(path)
    return dict(_torch_file_shapes(path, (stat.st_mtime_ns, stat.st_size)))
  from safetensors import safe_open

  try:
    with safe_open(path, framework="numpy") as f:
      return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
  except Exception as e:  # safetensors raises its own SafetensorError for a damaged header
    raise unreadable(path, ".safetensors file", e) from e


@functools.lru_cache(maxsize=8)
def _torch_file_shapes(path: str, stamp: tuple[int, int]) -> dict[str, tuple[int, ...]]:
  """{key: shape} of the state dict in a .pth/.pt file as it was at `stamp` (its mtime and size)."""
  del stamp  # the cache key
  return {key: tuple(value.shape) for key, value in _torch_state_dict(path).items()}
