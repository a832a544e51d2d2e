"""Q-networks of the multi-agent learners: a conv torso for grids, an MLP torso for vectors.

The grid network is the paper's (Appendix D.2): one conv layer (4x4 kernel, ``C -> 32``
channels), two dense layers of 64, ReLU. Observations that are not ``[H, W, C]`` grids get the
same dense layers on the flattened observation.

The convolution is written as patches times a matrix (im2col): on CPU, XLA's convolution
backward is several times slower than a matmul, and the patch indices are static. Padding:

* ``valid`` — only positions where the 4x4 window fits (``(G-3)^2`` of them): no work on
  padding; on 7x7, 16 positions and 512 features instead of 49 and 1,568 with ``same``,
  about 3x fewer FLOPs in the conv and the first dense layer;
* ``circular`` — ``G^2`` positions, the window wrapping around the torus (needed when the grid
  is smaller than the kernel, as on 3x3);
* ``auto`` — ``valid`` when ``G >= 4``, else ``circular``.

Extra inputs (the other agents' follow bits, or a one-hot recommendation) join after the
convolution, so evaluating the network for several extra inputs reuses the conv features.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

KERNEL = 4
PADDINGS = ("auto", "valid", "circular")


def _height_width(grid) -> tuple[int, int]:
    """``(H, W)`` of a grid given as its side ``G`` or as ``(H, W)``."""
    return (grid, grid) if isinstance(grid, int) else (int(grid[0]), int(grid[1]))


def resolve_padding(grid, padding: str) -> str:
    """``valid`` or ``circular`` for this grid (side ``G`` or ``(H, W)``)."""
    if padding not in PADDINGS:
        raise ValueError(f"conv_padding: must be one of {PADDINGS}, got {padding!r}")
    smallest = min(_height_width(grid))
    if padding == "auto":
        return "valid" if smallest >= KERNEL else "circular"
    if padding == "valid" and smallest < KERNEL:
        raise ValueError(f"conv_padding: 'valid' needs a grid side >= {KERNEL}, got {smallest}")
    return padding


def patch_indices(grid, padding: str) -> np.ndarray:
    """``[P, 16]`` flat input cells (``row * W + column``) of each output position's window."""
    h, w = _height_width(grid)
    if padding == "valid":
        starts = [(r, c) for r in range(h - KERNEL + 1) for c in range(w - KERNEL + 1)]
        offset = 0
    else:  # circular, anchored like 'same' padding for an even kernel (1 before, 2 after)
        starts = [(r, c) for r in range(h) for c in range(w)]
        offset = -(KERNEL // 2 - 1)
    idx = [
        [
            ((r + dr + offset) % h) * w + (c + dc + offset) % w
            for dr in range(KERNEL)
            for dc in range(KERNEL)
        ]
        for r, c in starts
    ]
    return np.asarray(idx, np.int32)


def _dense_layers(key: jax.Array, shapes: list[tuple[int, int]]) -> list[dict]:
    """LeCun-normal (truncated) weights and zero biases of ``(fan_in, fan_out)`` layers."""
    keys = jax.random.split(key, len(shapes))
    layers = []
    for k, (fan_in, fan_out) in zip(keys, shapes, strict=True):
        w = jax.random.truncated_normal(k, -2.0, 2.0, (fan_in, fan_out)) / (
            0.8796 * jnp.sqrt(fan_in)
        )
        layers.append({"w": w, "b": jnp.zeros(fan_out)})
    return layers


def init_mlp_q(
    key: jax.Array, input_size: int, extra: int, num_actions: int, hidden: Sequence[int] = (64, 64)
) -> dict:
    """Parameters of the dense network on flat inputs ``[D]`` (and ``extra`` inputs)."""
    shapes = [(input_size + extra, hidden[0])]
    shapes += list(zip(hidden[:-1], hidden[1:], strict=True)) + [(hidden[-1], num_actions)]
    return {"dense": _dense_layers(key, shapes)}


def init_conv_q(
    key: jax.Array,
    grid,
    channels: int,
    extra: int,
    num_actions: int,
    padding: str,
    conv_channels: int = 32,
    hidden: Sequence[int] = (64, 64),
) -> dict:
    """Parameters of the grid network (LeCun-normal weights, zero biases); grid: G or (H, W)."""
    positions = patch_indices(grid, padding).shape[0]
    shapes = [
        (KERNEL * KERNEL * channels, conv_channels),
        (positions * conv_channels + extra, hidden[0]),
    ]
    shapes += list(zip(hidden[:-1], hidden[1:], strict=True)) + [(hidden[-1], num_actions)]
    layers = _dense_layers(key, shapes)
    return {"conv": layers[0], "dense": layers[1:]}


def conv_features(params: dict, obs: jax.Array, patches: np.ndarray) -> jax.Array:
    """``obs [..., G, G, C]`` -> flattened ReLU conv features ``[..., P * 32]``."""
    flat = obs.reshape(*obs.shape[:-3], -1, obs.shape[-1])  # [..., G*G, C]
    windows = jnp.take(flat, jnp.asarray(patches), axis=-2)  # [..., P, 16, C]
    windows = windows.reshape(*windows.shape[:-2], -1)  # [..., P, 16*C]
    conv = jax.nn.relu(windows @ params["conv"]["w"] + params["conv"]["b"])
    return conv.reshape(*conv.shape[:-2], -1)


def head(params: dict, features: jax.Array, extra: jax.Array | None = None) -> jax.Array:
    """Dense layers on conv features (and extra inputs ``[..., E]``): ``[..., A]``."""
    first = params["dense"][0]
    num_features = features.shape[-1]
    x = features @ first["w"][:num_features] + first["b"]
    if extra is not None and extra.shape[-1]:
        x = x + extra @ first["w"][num_features:]
    x = jax.nn.relu(x)
    for layer in params["dense"][1:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    last = params["dense"][-1]
    return x @ last["w"] + last["b"]


def apply_conv_q(
    params: dict, obs: jax.Array, patches: np.ndarray, extra: jax.Array | None = None
) -> jax.Array:
    """Q-values ``[..., A]`` of observations ``[..., G, G, C]`` (and extra inputs)."""
    return head(params, conv_features(params, obs, patches), extra)


# ------------------------------------------------------------------ sparse observations
def window_counts(grid, padding: str) -> np.ndarray:
    """``[H*W, P, 16]``: how often cell ``c`` sits under tap ``t`` of output position ``p``.

    More than once when a circular window wraps around a small grid.
    """
    h, w = _height_width(grid)
    patches = patch_indices(grid, padding)
    counts = np.zeros((h * w, patches.shape[0], KERNEL * KERNEL), np.float32)
    for p, window in enumerate(patches):
        for tap, cell in enumerate(window):
            counts[cell, p, tap] += 1.0
    return counts


def response_table(params: dict, counts: np.ndarray, channels: int = 4) -> jax.Array:
    """``[G*G, C, P * 32]``: the conv pre-activation produced by a single one at (cell, channel).

    A sparse observation has a handful of ones (e.g. one per agent and one per item), so its
    conv output is the sum of a few rows of this table plus the bias: exact, and far cheaper
    than the patches.
    """
    w = params["conv"]["w"].reshape(KERNEL * KERNEL, channels, -1)  # [16, C, 32]
    table = jnp.einsum("cpt,tkf->ckpf", jnp.asarray(counts), w)
    return table.reshape(counts.shape[0], channels, -1)


def sparse_conv_features(
    params: dict, table: jax.Array, cells: jax.Array, channels: jax.Array
) -> jax.Array:
    """Conv features ``[..., P * 32]`` of observations given by their ones.

    ``cells [..., E]`` and ``channels [..., E]`` are the flat cell index and the channel of
    each one.
    """
    bias = jnp.tile(params["conv"]["b"], table.shape[-1] // params["conv"]["b"].shape[0])
    return jax.nn.relu(jnp.sum(table[cells, channels], axis=-2) + bias)


def first_layer(params: dict, features: jax.Array) -> jax.Array:
    """The first dense layer's pre-activation from conv features (shared across extras)."""
    first = params["dense"][0]
    return features @ first["w"][: features.shape[-1]] + first["b"]


def head_from_first(params: dict, pre: jax.Array, extra: jax.Array | None = None) -> jax.Array:
    """The rest of :func:`head` from the first layer's pre-activation (``pre``) and extras."""
    first = params["dense"][0]
    x = pre
    if extra is not None and extra.shape[-1]:
        x = x + extra @ first["w"][first["w"].shape[0] - extra.shape[-1] :]
    x = jax.nn.relu(x)
    for layer in params["dense"][1:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    last = params["dense"][-1]
    return x @ last["w"] + last["b"]
