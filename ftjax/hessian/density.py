"""The Hessian's eigenvalue density by stochastic Lanczos quadrature (SLQ, docs/methods.md §4.6), for the whole
network and for each layer's diagonal block H_ii.

Each run starts Lanczos from a random probe v; the m Ritz values theta_j of its tridiagonal T and the squared
first entries s_j^2 of T's eigenvectors are the nodes and weights of an m-point Gauss quadrature of the spectral
measure sum_i (u_i^T v)^2 / |v|^2 delta(lambda - lambda_i) of v (lambda_i, u_i the eigenpairs of H); its mean over
runs estimates the spectral density (1/n) sum_i delta(lambda - lambda_i).

Each run holds its Lanczos basis [m, d] (full reorthogonalisation). `hessian_spectrum` takes the Lanczos steps in a
host loop, `runs_per_batch` runs at a time, each step's Hessian products computed together from once-linearized
gradients (`products.rows_operator`): on XLA:CPU a convolutional network's products run an order of magnitude slower
inside a compiled loop than at top level (jax#12868, see `eigen`). `lanczos_quadrature` is the same Lanczos step in
a `lax.fori_loop`, for a map that can be traced (e.g. inside jit).
"""

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp

from ftjax import tree_paths
from ftjax.hessian import products
from ftjax.hessian.quadrature import _orthogonalize

PROBE_DISTRIBUTIONS = ("rademacher", "normal")


class SpectralQuadrature(NamedTuple):
  """nodes [runs, m]: the Ritz values of each run, ascending; weights [runs, m]: their quadrature weights (each
  run's sum to 1)."""

  nodes: jax.Array
  weights: jax.Array


def restart_direction(basis: jax.Array) -> jax.Array:
  """[d]: the unit coordinate vector e_i farthest from the span of the rows of `basis` [m, d] (orthonormal or
  zero), made orthogonal to them and normalised; its squared distance 1 - sum_j basis[j, i]^2 is >= 1 - rank/d."""
  coordinate = jnp.argmin(jnp.sum(basis**2, axis=0))
  w = _orthogonalize(basis, jnp.zeros(basis.shape[1], basis.dtype).at[coordinate].set(1.0))
  return w / jnp.linalg.norm(w)


def lanczos_tridiagonal(matvec, start: jax.Array, num_steps: int, breakdown_tol: float = 1e-5):
  """(alpha [m], beta [m-1]), m = num_steps <= d: the tridiagonal T = Q^T A Q of the symmetric map `matvec` on an
  orthonormal basis Q [d, m] whose first column is start / |start| [d], built by Lanczos with full
  reorthogonalisation. Where the Krylov space is exhausted (residual at most `breakdown_tol` |A q_j|), beta_j is 0
  and Lanczos goes on from `restart_direction`: T stays block diagonal, every eigenvalue of T is a Ritz value of
  A, and the blocks after the first take no weight."""

  def step_fn(step, carry):
    basis, alphas, betas = carry
    return lanczos_step(basis, alphas, betas, step, matvec(basis[step]), breakdown_tol)

  basis = jnp.zeros((num_steps, start.shape[0]), start.dtype).at[0].set(start / jnp.linalg.norm(start))
  empty = jnp.zeros(num_steps, start.dtype)
  _, alphas, betas = jax.lax.fori_loop(0, num_steps, step_fn, (basis, empty, empty))
  return alphas, betas[:-1]


def lanczos_step(basis, alphas, betas, step, product, breakdown_tol: float):
  """Lanczos step `step` given `product` = A q (q = basis[step]): (basis [m, d] with row step + 1 the next direction,
  alphas [m] with alpha_step = q^T A q, betas [m] with beta_step, 0 where the Krylov space is exhausted and the next
  direction is `restart_direction`)."""
  q = basis[step]
  w = _orthogonalize(basis, product)
  beta = jnp.linalg.norm(w)
  broken = beta <= breakdown_tol * jnp.linalg.norm(product)
  following = jax.lax.cond(broken, restart_direction, lambda _: w / beta, basis)
  return (
    basis.at[step + 1].set(following, mode="drop"),
    alphas.at[step].set(jnp.vdot(q, product)),
    betas.at[step].set(jnp.where(broken, 0.0, beta)),
  )


# One step of several runs, updating their bases in place (donated: a basis is m vectors as long as the params).
_lanczos_steps = jax.jit(jax.vmap(lanczos_step, in_axes=(0, 0, 0, None, 0, None)), donate_argnums=(0, 1, 2))


def lanczos_rows(apply_rows, starts: jax.Array, num_steps: int, breakdown_tol: float = 1e-5):
  """(alphas [r, m], betas [r, m-1]): `lanczos_tridiagonal` from each row of `starts` [r, d], each step's r products
  computed together by `apply_rows` ([r, d] -> [r, d]) in a host loop, outside any compiled loop."""
  unit = starts / jnp.linalg.norm(starts, axis=1, keepdims=True)
  basis = jnp.zeros((starts.shape[0], num_steps, starts.shape[1]), starts.dtype).at[:, 0].set(unit)
  alphas, betas = jnp.zeros((2, starts.shape[0], num_steps), starts.dtype)
  for step in range(num_steps):
    basis, alphas, betas = _lanczos_steps(basis, alphas, betas, step, apply_rows(basis[:, step]), breakdown_tol)
  return alphas, betas[:, :-1]


def gauss_quadrature(alphas: jax.Array, betas: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(nodes [m], weights [m]): the eigenvalues theta_j of the tridiagonal T (diagonal `alphas` [m], off-diagonal
  `betas` [m-1]) and the squared first entries s_j^2 of its unit eigenvectors."""
  theta, vectors = jnp.linalg.eigh(jnp.diag(alphas) + jnp.diag(betas, 1) + jnp.diag(betas, -1))
  return theta, vectors[0] ** 2


def lanczos_quadrature(matvec, starts: jax.Array, num_steps: int, runs_per_batch: int = 1) -> SpectralQuadrature:
  """Per start vector (rows of `starts` [runs, d]): the Gauss quadrature of its spectral measure under `matvec`
  from `num_steps` Lanczos steps (at most d), so that sum_j w_j theta_j^k = v^T A^k v / |v|^2 for every k < 2m
  (every k once m = d). The runs are `lax.map`ped, `runs_per_batch` of them `vmap`ped together."""
  num_steps = min(num_steps, starts.shape[1])
  run = lambda start: gauss_quadrature(*lanczos_tridiagonal(matvec, start, num_steps))
  return SpectralQuadrature(*jax.lax.map(run, starts, batch_size=runs_per_batch))


def probe_vectors(key: jax.Array, num_runs: int, dim: int, distribution: str = "rademacher", dtype=jnp.float32):
  """[num_runs, dim]: independent probes with entries +-1 ('rademacher') or standard normal ('normal')."""
  if distribution not in PROBE_DISTRIBUTIONS:
    raise ValueError(f"distribution={distribution!r}; valid: {', '.join(map(repr, PROBE_DISTRIBUTIONS))}")
  draw = jax.random.rademacher if distribution == "rademacher" else jax.random.normal
  return draw(key, (num_runs, dim), dtype)


def stochastic_lanczos_quadrature(
  matvec,
  dim: int,
  key: jax.Array,
  num_runs: int,
  num_steps: int,
  *,
  distribution: str = "rademacher",
  runs_per_batch: int = 1,
  dtype=jnp.float32,
) -> SpectralQuadrature:
  """SLQ of the symmetric map `matvec` over vectors [dim]: `lanczos_quadrature` from the `num_runs` probes
  `probe_vectors(key, ...)`. The mean over runs of sum_j w_j theta_j^k is an unbiased estimate of tr(A^k) / dim for
  every k < 2 num_steps."""
  starts = probe_vectors(key, num_runs, dim, distribution, dtype)
  return lanczos_quadrature(matvec, starts, num_steps, runs_per_batch)


def hessian_spectrum(
  loss_fn,
  params,
  key: jax.Array,
  num_runs: int,
  num_steps: int,
  *,
  layer: str | None = None,
  distribution: str = "rademacher",
  runs_per_batch: int = 1,
  linearize: bool = True,
) -> SpectralQuadrature:
  """`stochastic_lanczos_quadrature` of the Hessian of `loss_fn` (or of the mean of a sequence of per-batch losses)
  at `params`: over all parameters flattened in tree order, or with `layer` ('/'-joined path) of the block H_ii over
  that leaf alone. Deterministic for a fixed `key`; `num_steps` Hessian-vector products per run, those of
  `runs_per_batch` runs computed together; `linearize` as in `products.rows_operator`."""
  apply_rows, dim = products.rows_operator(loss_fn, params, layer, linearize)
  leaves = jax.tree.leaves(tree_paths.named_leaves(params)[layer] if layer else params)
  starts = probe_vectors(key, num_runs, dim, distribution, jnp.result_type(*leaves))
  steps, quadrature = min(num_steps, dim), jax.jit(jax.vmap(gauss_quadrature))
  runs = [
    quadrature(*lanczos_rows(apply_rows, starts[first : first + runs_per_batch], steps))
    for first in range(0, num_runs, runs_per_batch)
  ]
  return SpectralQuadrature(*(jnp.concatenate(parts) for parts in zip(*runs)))


def layer_spectra(
  loss_fn,
  params,
  key: jax.Array,
  num_runs: int,
  num_steps: int,
  *,
  is_layer=tree_paths.is_weight_tensor,
  **options,
) -> dict[str, SpectralQuadrature]:
  """{layer path: `hessian_spectrum` of its block H_ii} for every leaf with `is_layer(name, leaf)` (default: weight
  tensors, docs/methods.md §1), layer i drawing from `key` folded with i; `options` as in `hessian_spectrum`."""
  return {
    name: hessian_spectrum(loss_fn, params, jax.random.fold_in(key, i), num_runs, num_steps, layer=name, **options)
    for i, name in enumerate(tree_paths.layer_names(params, is_layer))
  }


def density(nodes: jax.Array, weights: jax.Array, grid: jax.Array, sigma: float) -> jax.Array:
  """[g]: the spectral density on the increasing `grid` [g], the mean over runs of sum_j w_j N(t; theta_j, sigma^2)
  (nodes, weights [runs, m] or [m]), divided by its trapezoid-rule integral over the grid so that it integrates
  to 1 there."""
  nodes, weights = jnp.atleast_2d(nodes), jnp.atleast_2d(weights)
  gaussians = jnp.exp(-0.5 * ((grid - nodes[..., None]) / sigma) ** 2) / (sigma * jnp.sqrt(2 * jnp.pi))
  mixture = jnp.einsum("rm,rmg->g", weights, gaussians) / len(nodes)
  return mixture / jnp.trapezoid(mixture, grid)


def moments(nodes: jax.Array, weights: jax.Array, orders: Sequence[int]) -> jax.Array:
  """[runs, len(orders)]: sum_j w_j theta_j^k for each run and order k; with SLQ's probes, the mean over runs
  estimates tr(H^k) / n (n the dimension) for k < 2m."""
  powers = jnp.atleast_2d(nodes)[..., None] ** jnp.asarray(orders)
  return jnp.einsum("rm,rmk->rk", jnp.atleast_2d(weights), powers)
