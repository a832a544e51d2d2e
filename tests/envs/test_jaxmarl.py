"""JaxMARL environments through the adapter: the same numbers as JaxMARL's own functions, the
episode limit as a truncation, and the whole pipeline end to end (skipped without jaxmarl)."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

jaxmarl = pytest.importorskip("jaxmarl")

from contractrl.envs.adapters import EnvUnusableError, JaxMARLEnv  # noqa: E402
from contractrl.envs.registry import make  # noqa: E402
from contractrl.experiments.cli import main  # noqa: E402

ENV_ID = "MPE_simple_spread_v3"


def test_adapter_steps_as_jaxmarl_does():
    env = make(f"jaxmarl:{ENV_ID}")
    raw = jaxmarl.make(ENV_ID)
    assert isinstance(env, JaxMARLEnv) and env.num_agents == raw.num_agents
    assert env.max_steps == raw.max_steps and env.num_actions == raw.action_space(raw.agents[0]).n
    key = jax.random.PRNGKey(0)
    obs, state = env.reset(key)
    raw_obs, raw_state = raw.reset(key)
    np.testing.assert_array_equal(np.asarray(obs[0]), np.asarray(raw_obs[raw.agents[0]]))
    for t in range(raw.max_steps):
        acts = jnp.asarray([(t + i) % env.num_actions for i in range(env.num_agents)])
        k = jax.random.PRNGKey(100 + t)
        obs, state, rewards, terminated, truncated, info = env.step(k, state, acts)
        k_step = jax.random.split(k)[0]  # the base class's split: dynamics, then reset
        raw_acts = {a: acts[i] for i, a in enumerate(raw.agents)}
        raw_obs, raw_state, raw_rewards, dones, _ = raw.step_env(k_step, raw_state, raw_acts)
        np.testing.assert_allclose(
            np.asarray(rewards), [float(raw_rewards[a]) for a in raw.agents], rtol=1e-6
        )
        np.testing.assert_array_equal(
            np.asarray(info["final_obs"][1]), np.asarray(raw_obs[raw.agents[1]])
        )
        last = t == raw.max_steps - 1
        # MPE ends only at its time limit: after max_steps steps, a truncation, never a
        # termination (JaxMARL's own done comes one step later; the adapter counts steps)
        assert bool(truncated) == last and not bool(terminated)
        assert not bool(dones["__all__"])


def test_unknown_id_and_continuous_actions_are_refused():
    with pytest.raises(EnvUnusableError, match="no environment 'No_such_env'"):
        make("jaxmarl:No_such_env")
    with pytest.raises(EnvUnusableError, match="discrete"):
        make(f"jaxmarl:{ENV_ID}", action_type="Continuous")


def test_pipeline_end_to_end(tmp_path):
    out = tmp_path / "spread"
    flags = ["--preset", "smoke", "--seeds", "1", "--backend", "inline", "--no-progress"]
    flags += ["--iterations", "300", "--learning-starts", "100", "--eval-every", "300"]
    flags += ["--eval-episodes", "4", "--baselines", "selfish"]
    assert main(["train", "marl", "--env", f"jaxmarl:{ENV_ID}", "--out", str(out), *flags]) == 0
    mean = json.loads((out / "results.json").read_text())["mean"]
    for key in ("welfare", "welfare_selfish", "payments", "follow_rate", "spe_gain", "ic_gain"):
        assert math.isfinite(mean[key]), key
    # MPE's rewards are negative: welfare shares and utility ratios are undefined there
    assert mean["welfare"] < 0 and math.isnan(mean["payment_share"])
    assert math.isnan(mean["spe_ratio"])
