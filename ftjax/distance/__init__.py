"""Distance-based regularisation (docs/methods.md §2): norms of W - W^(s), projections and penalties."""

from ftjax.distance import anchors, batchnorm, norms, penalty, projection, radii
from ftjax.distance.anchors import AnchorState, anchor_params
from ftjax.distance.batchnorm import batchnorm_constraint, clip_bn_scale
from ftjax.distance.norms import as_matrix, frobenius_norm, layer_distances, mars_norm
from ftjax.distance.penalty import add_penalty_gradient, l2sp_penalty, layerwise_penalty
from ftjax.distance.projection import distance_projection, project_to_frobenius_ball, project_to_mars_ball
from ftjax.distance.radii import group_values, layer_values

__all__ = [
  "AnchorState",
  "add_penalty_gradient",
  "anchor_params",
  "anchors",
  "as_matrix",
  "batchnorm",
  "batchnorm_constraint",
  "clip_bn_scale",
  "distance_projection",
  "frobenius_norm",
  "group_values",
  "l2sp_penalty",
  "layer_distances",
  "layer_values",
  "layerwise_penalty",
  "mars_norm",
  "norms",
  "penalty",
  "project_to_frobenius_ball",
  "project_to_mars_ball",
  "projection",
  "radii",
]
