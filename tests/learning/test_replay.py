"""Replay buffers: ring semantics, uniform and prioritised sampling, priority updates."""

import jax
import jax.numpy as jnp
import numpy as np

from contractrl.learning import replay


def filled(capacity=10, n=7, alpha=1.0):
    buf = replay.init_buffer({"x": jnp.zeros((), jnp.int32), "y": jnp.zeros(2)}, capacity, alpha)
    return replay.add_batch(buf, {"x": jnp.arange(n), "y": jnp.ones((n, 2))})


def test_ring_buffer_overwrites_oldest():
    buf = filled(10, 7)
    buf = replay.add_batch(buf, {"x": jnp.arange(100, 106), "y": jnp.zeros((6, 2))})
    assert int(buf.size) == 10 and int(buf.position) == 3
    assert np.asarray(buf.data["x"]).tolist() == [103, 104, 105, 3, 4, 5, 6, 100, 101, 102]


def test_uniform_sampling_only_filled_slots():
    buf = filled(10, 4)
    batch, idx, w = replay.sample_uniform(buf, jax.random.PRNGKey(0), 1000)
    assert set(np.asarray(idx).tolist()) == {0, 1, 2, 3}
    assert (np.asarray(w) == 1).all()


def test_prioritized_sampling_follows_priorities():
    alpha = 0.7
    buf = filled(8, 8, alpha)
    priorities = jnp.array([1.0, 2.0, 4.0, 8.0, 0.5, 0.5, 0.5, 0.5])
    buf = replay.update_priorities(buf, jnp.arange(8), priorities, eps=0.0)
    _, idx, weights = replay.sample_prioritized(buf, jax.random.PRNGKey(1), 200_000, 0.5)
    freq = np.bincount(np.asarray(idx), minlength=8) / 200_000
    expected = np.asarray(priorities) ** alpha / np.sum(np.asarray(priorities) ** alpha)
    assert np.allclose(freq, expected, atol=3e-3)
    # importance weights (N P(i))^-β / max
    w = (8 * expected) ** -0.5
    w /= w.max()
    assert np.allclose(np.asarray(weights), w[np.asarray(idx)], rtol=1e-5)


def test_new_transitions_get_max_priority_and_eps_floor():
    buf = filled(8, 4)
    buf = replay.update_priorities(buf, jnp.array([0, 1]), jnp.array([3.0, 0.0]), eps=1e-7)
    assert float(buf.priorities[1]) == np.float32(1e-7)
    buf = replay.add_batch(buf, {"x": jnp.array([9]), "y": jnp.zeros((1, 2))})
    assert float(buf.priorities[4]) == float(buf.max_priority) == np.float32(3.0 + 1e-7)


def test_sum_tree_stays_consistent_and_never_samples_empty_slots(rng):
    """Random updates (with duplicate indices) keep every node the sum of its children; the
    sampler only returns filled slots, at frequencies proportional to p^α."""
    buf = filled(100, 37, alpha=0.5)
    for _ in range(20):
        idx = jnp.asarray(rng.integers(0, 37, size=16))
        buf = replay.update_priorities(buf, idx, jnp.asarray(rng.random(16) * 5), 1e-7)
    tree = np.asarray(buf.tree)
    m = tree.shape[0] // 2
    assert m == 128
    assert np.allclose(tree[1:m], tree[2 : 2 * m : 2] + tree[3 : 2 * m : 2], rtol=1e-5)
    assert (tree[m + 37 :] == 0).all()
    _, idx, _ = replay.sample_prioritized(buf, jax.random.PRNGKey(0), 100_000, 0.0)
    idx = np.asarray(idx)
    assert idx.max() < 37
    freq = np.bincount(idx, minlength=37) / idx.size
    assert np.allclose(freq, tree[m : m + 37] / tree[m : m + 37].sum(), atol=4e-3)
