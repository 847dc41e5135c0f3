"""Names for the leaves of parameter pytrees: '/'-joined key paths (e.g. 'stage1/block0/conv1/kernel')."""

from typing import Any, Callable

import jax


def path_name(path) -> str:
  """'/'-joined name of a `jax.tree_util` key path."""
  parts = []
  for key in path:
    if isinstance(key, jax.tree_util.DictKey):
      parts.append(str(key.key))
    elif isinstance(key, jax.tree_util.GetAttrKey):
      parts.append(key.name)
    elif isinstance(key, jax.tree_util.SequenceKey):
      parts.append(str(key.idx))
    else:
      parts.append(str(key))
  return "/".join(parts)


def named_leaves(tree) -> dict[str, Any]:
  """Flat {name: leaf} view of a pytree, in tree order."""
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {path_name(path): leaf for path, leaf in flat}


def map_with_names(fn: Callable[[str, Any], Any], tree, *rest):
  """`jax.tree.map` whose function also receives each leaf's name."""
  return jax.tree_util.tree_map_with_path(lambda path, *leaves: fn(path_name(path), *leaves), tree, *rest)


def is_weight_tensor(name: str, leaf) -> bool:
  """A constrained "layer" (docs/methods.md §1): the kernel of a conv or dense layer, never a bias or a norm scale."""
  return name.split("/")[-1] == "kernel" and getattr(leaf, "ndim", 0) >= 2


def layer_names(params, is_layer: Callable[[str, Any], bool] = is_weight_tensor) -> list[str]:
  """The paths of the leaves of `params` with `is_layer(name, leaf)`, in tree order (default: weight tensors)."""
  return [name for name, leaf in named_leaves(params).items() if is_layer(name, leaf)]
