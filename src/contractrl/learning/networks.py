"""Q-networks (docs/model.md §5–6) as pure functions of a params dict with a row-sparse input layer.

The input is one of ``I`` discrete items (a state, or a (time, state) pair) encoded one-hot. A
one-hot vector times a dense matrix is one row of it, so the first layer is a table ``[I, H0]``
whose rows are looked up, plus a bias; then ReLU hidden layers and a linear head with one value
per action. Initialisation is LeCun normal (fan-in = ``I`` for the table, as for a dense layer
on one-hot inputs).

Because a batch touches at most ``B`` rows of the table, the optimiser can update only those
rows (:mod:`contractrl.learning.optim`) and the networks can run on the batch's distinct inputs
only (:mod:`contractrl.learning.distinct`).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp


def init_mlp(key: jax.Array, num_inputs: int, num_actions: int, hidden: Sequence[int]) -> dict:
    """Parameters ``{"table": [I, H0], "bias": [H0], "layers": [{"w", "b"}, ...]}``."""
    widths = [*hidden, num_actions]
    keys = jax.random.split(key, len(widths))
    table = jax.random.truncated_normal(keys[0], -2.0, 2.0, (num_inputs, widths[0]))
    # truncated normal on [-2, 2] has std 0.8796; rescale to 1/sqrt(fan_in)
    table = table / (0.8796 * jnp.sqrt(num_inputs))
    layers = []
    for k, (fan_in, fan_out) in zip(
        keys[1:], zip(widths[:-1], widths[1:], strict=True), strict=True
    ):
        w = jax.random.truncated_normal(k, -2.0, 2.0, (fan_in, fan_out)) / (
            0.8796 * jnp.sqrt(fan_in)
        )
        layers.append({"w": w, "b": jnp.zeros(fan_out)})
    return {"table": table, "bias": jnp.zeros(widths[0]), "layers": layers}


def mlp_from_rows(params: dict, rows: jax.Array) -> jax.Array:
    """Q-values ``[..., A]`` from already looked-up table rows ``[..., H0]``."""
    x = jax.nn.relu(rows + params["bias"])
    layers = params["layers"]
    for layer in layers[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return x @ layers[-1]["w"] + layers[-1]["b"]


def mlp_apply(params: dict, index: jax.Array) -> jax.Array:
    """Q-values ``[..., A]`` of the discrete inputs ``index [...]``."""
    return mlp_from_rows(params, jnp.take(params["table"], index, axis=0))
