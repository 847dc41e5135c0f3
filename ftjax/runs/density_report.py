"""hessian_density.png: the Hessian's eigenvalue density by stochastic Lanczos quadrature (docs/methods.md §4.6),
for the whole network and optionally each layer's block, on a log scale with the top eigenvalue marked."""

import math
import os

import numpy as np
from matplotlib.figure import Figure

from ftjax.hessian import NETWORK, density

FILENAME = "hessian_density.png"


def density_curve(
  spectrum: density.SpectralQuadrature, num_points: int = 1000, relative_sigma: float = 0.01
) -> tuple[np.ndarray, np.ndarray]:
  """(grid [num_points], density [num_points]): `density.density` of the spectrum, broadened by a Gaussian of
  standard deviation sigma = `relative_sigma` times the span of the nodes (times max(|node|, 1) when they
  coincide), on a uniform grid from 5 sigma below the smallest node to 5 sigma above the largest."""
  low, high = float(np.min(spectrum.nodes)), float(np.max(spectrum.nodes))
  sigma = relative_sigma * ((high - low) or max(abs(high), 1.0))
  grid = np.linspace(low - 5 * sigma, high + 5 * sigma, num_points)
  return grid, np.asarray(density.density(spectrum.nodes, spectrum.weights, grid, sigma), np.float64)


def hessian_density_figure(
  workdir: str,
  network: density.SpectralQuadrature,
  layers: dict[str, density.SpectralQuadrature] | None = None,
  *,
  top_eigenvalues: dict[str, float] | None = None,
  title: str = "Hessian eigenvalue density",
  num_points: int = 1000,
  relative_sigma: float = 0.01,
  file_name: str = FILENAME,
) -> str:
  """Writes hessian_density.png in `workdir` (`title` also in its metadata) and returns its path: one panel of
  the log-scale eigenvalue density (`density_curve`) of the whole network's Hessian, then one per layer block of
  `layers` in their order, three panels a row. Each panel marks its top eigenvalue with a labelled vertical line:
  `top_eigenvalues[name]` ('network' or a layer path) when given (e.g. from power iteration), else the largest
  Ritz value."""
  spectra = {NETWORK: network, **(layers or {})}
  columns = min(3, len(spectra))
  rows = math.ceil(len(spectra) / columns)
  fig = Figure(figsize=(4.6 * columns, 3.4 * rows), layout="constrained")
  axes = fig.subplots(rows, columns, squeeze=False).ravel()
  for ax, (name, spectrum) in zip(axes, spectra.items()):
    grid, values = density_curve(spectrum, num_points, relative_sigma)
    floor = values.max() * 1e-8
    ax.semilogy(grid, np.maximum(values, floor))
    ax.set_ylim(bottom=floor)
    top = (top_eigenvalues or {}).get(name, float(np.max(spectrum.nodes)))
    ax.axvline(top, color="C3", linestyle="--", linewidth=1)
    label = f"top eigenvalue {top:.4g} "
    box = dict(facecolor="white", edgecolor="none", alpha=0.8, pad=1)
    ax.text(
      top, 0.97, label, transform=ax.get_xaxis_transform(), ha="right", va="top", rotation=90, fontsize=8, bbox=box
    )
    ax.set_title(name, fontsize=10)
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density (log scale)")
    ax.grid(alpha=0.3)
  for ax in axes[len(spectra) :]:
    ax.set_axis_off()
  fig.suptitle(title, fontsize=11)
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, file_name)
  fig.savefig(path, dpi=100, metadata={"Title": title})
  return path
