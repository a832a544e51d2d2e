"""Running row-table networks on a batch's distinct inputs only (exact).

A batch of ``B = 128`` transitions from a Tree MDP holds only 60–80 distinct states. Duplicates
share their activations and their gradients add up, so the networks run on the distinct inputs
and the results are scattered back. Shapes must be static, so a few sizes are compiled and the
smallest that fits the batch's distinct count is picked at run time (``lax.switch``). Under
``vmap`` (several runs as lanes) the switch would run every branch, so batched runs use the full
size only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from contractrl.learning.networks import mlp_apply, mlp_from_rows


def unique_rows(index: jax.Array, num_inputs: int) -> tuple[jax.Array, jax.Array]:
    """Fixed-size unique: ``(rows [B], inverse [B])``.

    Unused slots hold ``num_inputs`` (out of range: dropped by scatters with ``mode="drop"``).
    """
    rows, inverse = jnp.unique(
        index, size=index.shape[0], fill_value=num_inputs, return_inverse=True
    )
    return rows, inverse.reshape(index.shape)


def static_sizes(batch_size: int, dedup_sizes: Sequence[int], batched: bool) -> list[int]:
    """The compiled sizes, ascending: the useful ``dedup_sizes`` and the full batch."""
    small = sorted(u for u in set(dedup_sizes) if 0 < u < batch_size)
    return [batch_size] if batched else [*small, batch_size]


def _switch(rows, num_inputs: int, sizes: list[int], branch: Callable[[int], Callable]):
    count = jnp.sum(rows < num_inputs)
    which = jnp.searchsorted(jnp.asarray(sizes), count)
    return jax.lax.switch(which, [branch(u) for u in sizes], None)


def forward(net_params: dict, index: jax.Array, num_inputs: int, sizes: list[int]) -> jax.Array:
    """``mlp_apply(net_params, index)`` computed on the distinct inputs only."""
    rows, inverse = unique_rows(index, num_inputs)

    def branch(size):
        return lambda _: mlp_apply(net_params, jnp.minimum(rows[:size], num_inputs - 1))[inverse]

    return _switch(rows, num_inputs, sizes, branch)


def gradients(
    loss: Callable[[dict], tuple[jax.Array, Any]],
    params: dict,
    trained: tuple[str, ...],
    index: jax.Array,
    num_inputs: int,
    sizes: list[int],
):
    """Gradients of ``loss`` with respect to the networks ``trained``, on distinct inputs.

    Args:
        loss: ``loss(outputs) -> (scalar, aux)``, ``outputs[net] [B, out]`` the output of every
            network in ``params`` at ``index`` (untrained ones under ``stop_gradient``).
        params: ``{net: params}``.
        trained: the networks to differentiate.
        index: ``[B]`` the batch's inputs.
        num_inputs: ``I``.
        sizes: :func:`static_sizes`.

    Returns:
        ``(rows [B], grad_dense, grad_rows, aux)``: the distinct rows (out-of-range fill), the
        gradient of each trained network's dense part, and ``grad_rows[net] [B, H0]``, the
        summed gradient of each distinct row's table entry (0 on fill rows).
    """
    rows, inverse = unique_rows(index, num_inputs)

    def branch(size):
        def run(_):
            u = jnp.minimum(rows[:size], num_inputs - 1)
            dense = {n: {k: v for k, v in params[n].items() if k != "table"} for n in trained}
            looked_up = {n: params[n]["table"][u] for n in trained}
            frozen = {
                n: jax.lax.stop_gradient(mlp_apply(params[n], u))[inverse]
                for n in params
                if n not in trained
            }

            def of_trained(dense, looked_up):
                outputs = dict(frozen)
                for n in dense:
                    outputs[n] = mlp_from_rows(dense[n], looked_up[n])[inverse]
                return loss(outputs)

            (g_dense, g_rows), aux = jax.grad(of_trained, argnums=(0, 1), has_aux=True)(
                dense, looked_up
            )
            pad = index.shape[0] - size
            g_rows = {n: jnp.pad(g, ((0, pad), (0, 0))) for n, g in g_rows.items()}
            return g_dense, g_rows, aux

        return run

    g_dense, g_rows, aux = _switch(rows, num_inputs, sizes, branch)
    return rows, g_dense, g_rows, aux
