"""Observation encoders: what a learner stores per step and how its network reads it.

The torso is chosen from the environment (:func:`make_encoder`):

* :class:`SparseGridEncoder` — for environments with the
  :class:`~contractrl.envs.protocol.SparseObservations` capability (e.g. the Coin Game): the replay
  stores environment *states* (a few integers instead of a ``[n, H, W, C]`` grid) and the conv
  layer is evaluated from each observation's ones (:func:`.networks.response_table`); when
  the environment can enumerate its distinct observations and a batch holds more rows than
  there are, the first layer is evaluated once per distinct observation and looked up —
  exact, and it cuts the dominant matrix product of a gradient step by about a third;
* :class:`DenseEncoder` — any other environment: the replay stores observations; ``[H, W, C]``
  grids get the conv network, any other shape the dense layers on the flattened observation.

An encoder's *view* of a step is what the learner stores and what a policy reads:
``view(kept_obs, state)`` for the current step, ``final_view(info)`` for the state a step
reached (before an auto-reset). ``first_layer(params, views)`` gives the first dense layer's
pre-activation ``[..., n, H]`` of every agent; extra inputs (follow bits, a recommendation) join
after it (:func:`.networks.head_from_first`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from contractrl.envs.protocol import has_sparse_observations
from contractrl.multiagent.networks import (
    conv_features,
    first_layer,
    init_conv_q,
    init_mlp_q,
    patch_indices,
    resolve_padding,
    response_table,
    sparse_conv_features,
    window_counts,
)


class SparseGridEncoder:
    """Stored views are environment states; the conv layer reads the observations' ones.

    Args:
        env: a protocol environment with sparse observations.
        padding: ``conv_padding`` (see :mod:`.networks`).
        conv_channels: channels of the conv layer.
        hidden: widths of the dense layers.
    """

    def __init__(self, env, padding: str, conv_channels: int, hidden: tuple[int, ...]):
        self.env = env
        height, width, self.channels = (int(d) for d in env.observation_shape)
        self.grid = (height, width) if height != width else height
        self.padding = resolve_padding(self.grid, padding)
        self.counts = window_counts(self.grid, self.padding)
        self.distinct = env.distinct_observation_ones()
        self.conv_channels, self.hidden = conv_channels, hidden
        shapes = jax.eval_shape(env.reset, jax.random.PRNGKey(0))[1]
        self._example = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    def init(self, key: jax.Array, extra: int, num_actions: int) -> dict:
        """Parameters of the conv network with ``extra`` inputs after the convolution."""
        return init_conv_q(
            key,
            self.grid,
            self.channels,
            extra,
            num_actions,
            self.padding,
            self.conv_channels,
            self.hidden,
        )

    def keep(self, obs: jax.Array) -> None:
        """Nothing of the observation is kept: the state is enough."""
        del obs

    def view(self, kept, state):
        """The current step's view: the state."""
        del kept
        return state

    def final_view(self, info: dict):
        """The reached state's view (``info["final_state"]``)."""
        return info["final_state"]

    def example(self):
        """A zero view (one environment), the replay's template."""
        return self._example

    def lead_shape(self, views) -> tuple[int, ...]:
        """The batch dimensions of ``views`` (before the agent axis)."""
        ex = jax.tree_util.tree_leaves(self._example)[0]
        leaf = jax.tree_util.tree_leaves(views)[0]
        return tuple(leaf.shape[: leaf.ndim - ex.ndim])

    def first_layer(self, net_params: dict, views) -> jax.Array:
        """First dense pre-activation ``[..., n, H]`` of every agent's observation."""
        table = response_table(net_params, self.counts, self.channels)
        cells, channels = self.env.observation_ones(views)
        rows = int(np.prod(cells.shape[:-1]))
        if self.distinct is not None and rows >= self.distinct[0].shape[0]:
            all_cells, all_channels = self.distinct
            pre = first_layer(
                net_params,
                sparse_conv_features(
                    net_params, table, jnp.asarray(all_cells), jnp.asarray(all_channels)
                ),
            )
            return pre[self.env.observation_ids(cells, channels)]
        return first_layer(net_params, sparse_conv_features(net_params, table, cells, channels))


class DenseEncoder:
    """Stored views are observations ``[n, *observation_shape]``.

    ``[H, W, C]`` observations get the conv network (``padding``, ``conv_channels``), any other
    shape the dense layers on the flattened observation.
    """

    def __init__(self, env, padding: str, conv_channels: int, hidden: tuple[int, ...]):
        self.shape = tuple(int(d) for d in env.observation_shape)
        self.n = int(env.num_agents)
        self.conv_channels, self.hidden = conv_channels, hidden
        self.is_grid = len(self.shape) == 3
        if self.is_grid:
            height, width, _ = self.shape
            self.grid = (height, width)
            self.padding = resolve_padding(self.grid, padding)
            self.patches = patch_indices(self.grid, self.padding)

    def init(self, key: jax.Array, extra: int, num_actions: int) -> dict:
        """Parameters of the conv (grids) or dense (anything else) network."""
        if self.is_grid:
            return init_conv_q(
                key,
                self.grid,
                self.shape[2],
                extra,
                num_actions,
                self.padding,
                self.conv_channels,
                self.hidden,
            )
        return init_mlp_q(key, int(np.prod(self.shape)), extra, num_actions, self.hidden)

    def keep(self, obs: jax.Array) -> jax.Array:
        """The observation, as float32."""
        return jnp.asarray(obs, jnp.float32)

    def view(self, kept, state):
        """The current step's view: the kept observation."""
        del state
        return kept

    def final_view(self, info: dict) -> jax.Array:
        """The reached observation (``info["final_obs"]``)."""
        return jnp.asarray(info["final_obs"], jnp.float32)

    def example(self) -> jax.Array:
        """A zero view (one environment), the replay's template."""
        return jnp.zeros((self.n, *self.shape), jnp.float32)

    def lead_shape(self, views: jax.Array) -> tuple[int, ...]:
        """The batch dimensions of ``views`` (before the agent axis)."""
        return tuple(views.shape[: views.ndim - 1 - len(self.shape)])

    def first_layer(self, net_params: dict, views: jax.Array) -> jax.Array:
        """First dense pre-activation ``[..., n, H]`` of every agent's observation."""
        if self.is_grid:
            features = conv_features(net_params, views, self.patches)
        else:
            features = views.reshape(*views.shape[: views.ndim - len(self.shape)], -1)
        return first_layer(net_params, features)


def make_encoder(env, padding: str, conv_channels: int, hidden: tuple[int, ...]):
    """The encoder of ``env``: :class:`SparseGridEncoder` if it can, else :class:`DenseEncoder`."""
    if has_sparse_observations(env):
        return SparseGridEncoder(env, padding, conv_channels, hidden)
    return DenseEncoder(env, padding, conv_channels, hidden)
