"""A PettingZoo ParallelEnv stepped on the host: the official API test, the same numbers as
the JAX environment with the same rules, early ends, and exact repeats of seeded runs."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pettingzoo.test import parallel_api_test

from contractrl.envs.dilemma import IteratedDilemma
from contractrl.envs.host import PettingZooEnv
from contractrl.envs.registry import make
from contractrl.multiagent.algorithm3 import PrincipalLearner
from contractrl.multiagent.common import DQNConfig
from contractrl.multiagent.evaluation import rollout
from contractrl.multiagent.torso import make_encoder

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "pettingzoo_dilemma.py")
SMALL = DQNConfig(iterations=200, replay_capacity=200, hidden=(16, 16), learning_starts=50)


def _host(max_steps=6):
    return make(f"{EXAMPLE}:make", max_steps=max_steps)


def test_the_example_passes_pettingzoos_parallel_api_test():
    import importlib.util

    spec = importlib.util.spec_from_file_location("pettingzoo_dilemma", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parallel_api_test(module.make(max_steps=6), num_cycles=20)


def test_host_env_steps_like_the_jax_env_with_the_same_rules():
    host, jax_env = _host(), IteratedDilemma(horizon=6)
    assert isinstance(host, PettingZooEnv)
    assert (host.num_agents, host.num_actions, host.observation_shape, host.max_steps) == (
        jax_env.num_agents,
        jax_env.num_actions,
        jax_env.observation_shape,
        jax_env.max_steps,
    )
    plays = [(0, 0), (0, 1), (1, 1), (0, 0)] + [(0, 0)] * 7  # an early end, then a time limit
    (o1, s1), (o2, s2) = host.reset(jax.random.PRNGKey(0)), jax_env.reset(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(np.asarray(o1), np.asarray(o2))
    for t, acts in enumerate(plays):
        key = jax.random.PRNGKey(t)
        out1 = host.step(key, s1, jnp.asarray(acts))
        out2 = jax_env.step(key, s2, jnp.asarray(acts))
        s1, s2 = out1[1], out2[1]
        for a, b in zip(out1[:1] + out1[2:5], out2[:1] + out2[2:5], strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=f"step {t}")
        np.testing.assert_array_equal(
            np.asarray(out1[5]["final_obs"]), np.asarray(out2[5]["final_obs"])
        )


def test_evaluation_rollouts_agree_with_the_jax_env():
    """vmap over episodes calls the host once per episode; the totals match the JAX env."""
    host, jax_env = _host(), IteratedDilemma(horizon=6)

    def policy(views, actions=None):
        # cooperate in the first half, defect after (mutual defection ends the episode early)
        recs = jnp.where(views[..., 0] >= 0.5, 1, 0).astype(jnp.int32)
        chosen = recs if actions is None else actions
        return chosen, recs, 0.25 * (chosen == recs)

    key = jax.random.PRNGKey(3)
    a = rollout(host, make_encoder(host, "auto", 8, (8,)), policy, key, 5)
    b = rollout(jax_env, make_encoder(jax_env, "auto", 8, (8,)), policy, key, 5)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("runs", [2])
def test_seeded_host_training_repeats_exactly_and_matches_the_jax_env(runs):
    """The same learner on the host env and on the JAX env: identical parameters."""
    results = []
    for env in [_host() for _ in range(runs)] + [IteratedDilemma(horizon=6)]:
        learner = PrincipalLearner(env, SMALL)
        state, _ = learner.train_chunk(learner.init(jax.random.PRNGKey(5)), 0, 120)
        results.append([np.asarray(x) for x in jax.tree_util.tree_leaves(state.params)])
    for other in results[1:]:
        for x, y in zip(results[0], other, strict=True):
            np.testing.assert_array_equal(x, y)


def test_pipeline_end_to_end_with_early_termination(tmp_path):
    """``train marl`` with the PettingZoo dilemma (episodes end early on mutual defection):
    finite metrics, and the same numbers as the JAX environment with the same rules."""
    import json
    import math

    from contractrl.experiments.cli import main

    flags = ["--preset", "smoke", "--seeds", "1", "--backend", "inline", "--no-progress"]
    flags += ["--iterations", "300", "--learning-starts", "100", "--eval-every", "300"]
    flags += ["--eval-episodes", "4", "--baselines", "selfish"]
    host = ["--env", f"{EXAMPLE}:make", "--env-kwargs", '{"max_steps": 6}']
    assert main(["train", "marl", *host, "--out", str(tmp_path / "pz"), *flags]) == 0
    jax_env = ["--env", "iterated_dilemma", "--env-kwargs", '{"horizon": 6}']
    assert main(["train", "marl", *jax_env, "--out", str(tmp_path / "jax"), *flags]) == 0
    a = json.loads((tmp_path / "pz" / "results.json").read_text())["mean"]
    b = json.loads((tmp_path / "jax" / "results.json").read_text())["mean"]
    for key in ("welfare", "welfare_selfish", "payments", "follow_rate", "spe_gain", "ic_gain"):
        assert math.isfinite(a[key]) and a[key] == pytest.approx(b[key], rel=1e-6), key
