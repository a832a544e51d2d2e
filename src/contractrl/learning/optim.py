"""Adam for the row-table networks of :mod:`contractrl.learning.networks`, row-sparse on the table.

A batch touches at most ``B`` rows of a network's ``[I, H0]`` input table. :class:`RowSparseAdam`
updates only those rows (the semantics of PyTorch's ``SparseAdam``, "lazy Adam"): the other rows
and their moments stay as they are, so the table is not streamed through Adam every step. The
dense layers get optax's Adam. Gradients are clipped by the global norm of every trained
network, table rows included.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct


@struct.dataclass
class NetOptState:
    """Adam state of one network.

    Attributes:
        dense: optax Adam state of the dense layers (everything but ``table``).
        table_mu: ``[I, H0]`` first moments of the input table.
        table_nu: ``[I, H0]`` second moments of the input table.
        count: Adam step number of this network.
    """

    dense: Any
    table_mu: jax.Array
    table_nu: jax.Array
    count: jax.Array


def sparse_adam_rows(
    table: jax.Array,
    mu: jax.Array,
    nu: jax.Array,
    rows: jax.Array,
    grad_rows: jax.Array,
    count: jax.Array,
    lr: jax.Array,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
):
    """Adam on the given rows only (lazy Adam): moments and parameters of other rows stay.

    Args:
        table: ``[I, H]`` parameters.
        mu: ``[I, H]`` first Adam moments.
        nu: ``[I, H]`` second Adam moments.
        rows: ``[R]`` distinct row indices (out-of-range entries are ignored): the batch's
            ``R = B`` rows, or all ``R = I`` with dense Adam.
        grad_rows: ``[R, H]`` gradient of each listed row.
        count: Adam step number (1-based) for bias correction.
        lr: learning rate.
        b1: first-moment decay.
        b2: second-moment decay.
        eps: denominator floor.

    Returns:
        ``(table, mu, nu)`` updated.
    """
    safe = jnp.minimum(rows, table.shape[0] - 1)
    m = b1 * mu[safe] + (1 - b1) * grad_rows
    v = b2 * nu[safe] + (1 - b2) * grad_rows**2
    m_hat = m / (1 - b1**count)
    v_hat = v / (1 - b2**count)
    new = table[safe] - lr * m_hat / (jnp.sqrt(v_hat) + eps)
    return (
        table.at[rows].set(new, mode="drop"),
        mu.at[rows].set(m, mode="drop"),
        nu.at[rows].set(v, mode="drop"),
    )


def _dense_part(net_params: dict) -> dict:
    return {k: v for k, v in net_params.items() if k != "table"}


class RowSparseAdam:
    """Adam with global-norm clipping for networks ``{"table": [I, H0], ...}``.

    Args:
        num_inputs: ``I``, rows of the input tables.
        max_grad_norm: clip threshold of the global gradient norm (``None``: no clipping).
        sparse: update only the rows a batch touches; ``False``: dense Adam over every row.
    """

    def __init__(self, num_inputs: int, max_grad_norm: float | None, sparse: bool = True):
        self.num_inputs = num_inputs
        self.max_grad_norm = max_grad_norm
        self.sparse = sparse
        self.dense_adam = optax.scale_by_adam()

    def init(self, net_params: dict) -> NetOptState:
        """Zero moments for one network."""
        zeros = jnp.zeros_like(net_params["table"])
        return NetOptState(
            self.dense_adam.init(_dense_part(net_params)), zeros, zeros, jnp.zeros((), jnp.int32)
        )

    def step(self, params: dict, opt_state: dict, grad_dense: dict, grad_rows: dict, rows, lr):
        """One Adam step of the networks in ``grad_dense`` (the others are left untouched).

        Args:
            params: ``{net: params}`` of every network.
            opt_state: ``{net: NetOptState}`` of every network.
            grad_dense: ``{net: gradient of the dense part}`` of the trained networks.
            grad_rows: ``{net: [B, H0]}`` summed gradient of each listed table row.
            rows: ``[B]`` the distinct table rows (out-of-range fill ignored).
            lr: learning rate.

        Returns:
            ``(params, opt_state)`` updated.
        """
        if not self.sparse:
            grad_rows = {
                n: jnp.zeros((self.num_inputs, g.shape[-1])).at[rows].add(g, mode="drop")
                for n, g in grad_rows.items()
            }
            rows = jnp.arange(self.num_inputs)
        if self.max_grad_norm:
            norm = optax.tree.norm((grad_dense, grad_rows))
            factor = jnp.minimum(1.0, self.max_grad_norm / (norm + 1e-12))
        else:
            factor = 1.0
        params, opt_state = dict(params), dict(opt_state)
        for n in grad_dense:
            st = opt_state[n]
            g_dense = jax.tree_util.tree_map(lambda g: g * factor, grad_dense[n])
            updates, dense = self.dense_adam.update(g_dense, st.dense)
            rest = optax.apply_updates(
                _dense_part(params[n]), jax.tree_util.tree_map(lambda u: -lr * u, updates)
            )
            count = st.count + 1
            table, mu, nu = sparse_adam_rows(
                params[n]["table"], st.table_mu, st.table_nu, rows, grad_rows[n] * factor, count, lr
            )
            params[n] = {**rest, "table": table}
            opt_state[n] = NetOptState(dense, mu, nu, count)
        return params, opt_state
