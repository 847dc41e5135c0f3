"""Lanczos tridiagonalisation and Gauss quadrature of quadratic forms v^T f(A) v for a symmetric
map A given by its products (docs/methods.md §4.4 uses f = positive part on a layer's Hessian block).

Host loops over one product each, like `eigen.power_iteration` (see there why).
"""

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np


@jax.jit
def _orthogonalize(basis: jax.Array, w: jax.Array) -> jax.Array:
  """w minus its projection onto the rows of `basis` [m, d] (orthonormal or zero), done twice."""
  w = w - basis.T @ (basis @ w)
  return w - basis.T @ (basis @ w)


def lanczos(
  matvec: Callable[[jax.Array], jax.Array], start: jax.Array, num_steps: int, breakdown_tol: float = 1e-5
) -> tuple[np.ndarray, np.ndarray]:
  """(alpha [m], beta [m-1]): the tridiagonal T = Q^T A Q of A on the Krylov space of `start` [d],
  with full reorthogonalisation. m = num_steps, or fewer when the space is exhausted: the residual
  after step j is at most `breakdown_tol` times |A q_j|, i.e. the space is invariant under A."""
  q = start / jnp.linalg.norm(start)
  basis = jnp.zeros((num_steps, len(start)), start.dtype).at[0].set(q)
  alphas, betas = [], []
  for step in range(num_steps):
    product = matvec(q)
    alphas.append(float(jnp.vdot(q, product)))
    w = _orthogonalize(basis, product)
    beta = float(jnp.linalg.norm(w))
    if step == num_steps - 1 or beta <= breakdown_tol * float(jnp.linalg.norm(product)):
      break
    betas.append(beta)
    q = w / beta
    basis = basis.at[step + 1].set(q)
  return np.array(alphas), np.array(betas)


def quadratic_form(
  matvec: Callable[[jax.Array], jax.Array], v: jax.Array, num_steps: int, fn: Callable[[np.ndarray], np.ndarray]
) -> float:
  """v^T f(A) v by Gauss quadrature on the Lanczos tridiagonal T started from v:
  |v|^2 sum_j s_j^2 f(theta_j), with theta_j the eigenvalues of T and s_j the first entries of its
  eigenvectors. Exact when Lanczos exhausts the Krylov space of v (at most one step more than the
  number of distinct eigenvalues of A that v touches, so at most rank(A) + 1); otherwise an
  m-node quadrature of the spectral measure of v, exact for polynomials f of degree < 2m."""
  norm = float(jnp.linalg.norm(v))
  if norm == 0.0:
    return 0.0
  alphas, betas = lanczos(matvec, v, num_steps)
  theta, vectors = np.linalg.eigh(np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1))
  return norm**2 * float(np.sum(vectors[0] ** 2 * fn(theta)))


def positive_part(x: np.ndarray) -> np.ndarray:
  """max(x, 0): f for v^T A^+ v, A^+ keeping the positive eigenvalues of A."""
  return np.maximum(x, 0.0)
