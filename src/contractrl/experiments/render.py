"""``contractrl render RUN_DIR``: pictures of what an experiment learned.

* Coin Game experiments: one episode of the trained principal's plan (seed ``k``): every agent
  follows its recommendation and is paid the contract the principal computes for it
  (:meth:`~contractrl.multiagent.algorithm3.PrincipalLearner.contracts`), drawn frame by frame
  into an animated GIF (:func:`contractrl.plotting.animation.coin_gif`); or (``--agents
  validation``) the trained validation agents' episode against that principal, with each
  deviation drawn where it happens.
* ``train marl`` experiments: the same episode in any environment that can draw itself
  (``render(state)``), frame by frame (:func:`contractrl.plotting.animation.frames_gif`).
* Tree MDP and own-game experiments: the exact SPE policy of the first instance as a coloured
  tree (recommended action and expected payment per state;
  :func:`contractrl.plotting.animation.policy_tree`) for games whose states form a tree; for
  any other game (cycles included) the state graph of the first run's learned principal beside
  the SPE (:func:`contractrl.plotting.policy_graph.policy_graph`, ``policy-graph.png``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from contractrl.experiments.store import read_json


def coin_episode(
    exp: Path, seed_index: int = 0, key: int = 0, agents: str = "principal"
) -> dict[str, Any]:
    """Play one episode of seed ``seed_index``: the principal's plan or its validation agents.

    ``agents``: ``principal`` — every agent follows its recommendation (the plan) — or a
    validation phase (``validation``, ``validation_nudged``) — the trained validation agents
    play their own greedy actions against the principal, paid only where they follow.

    Returns a dict of ``[H + 1]``-leading arrays: ``positions [H+1, n, 2]``, ``coin [H+1, 2]``,
    ``colour [H+1]``, and per step ``recs [H, n]``, ``actions [H, n]`` (what was played; equal
    to ``recs`` for the plan), ``payments [H, n]``, ``rewards [H, n]``; plus ``grid_size``,
    ``nudge``, ``seed``, ``agents``.

    Raises:
        ValueError: ``agents`` names no validation phase of the run.
        FileNotFoundError: the run kept no parameters for ``agents``.
    """
    import jax

    from contractrl.envs import coin_game
    from contractrl.experiments.coin import _config, experiment_env, load_agents, load_principal
    from contractrl.multiagent.algorithm3 import principal_learner

    config = _config(exp)
    learner = principal_learner(experiment_env(config), config.dqn)
    params = load_principal(exp, config, seed_index)
    nudge = config.dqn.nudge
    if agents == "principal":

        @jax.jit
        def act(state):
            recs = learner.principal_recommendations(params["principal"], state)
            return recs, recs, learner.contracts(params, state, recs, nudge)

    else:
        validation = [p for p in config.phases() if p.startswith("validation")]
        if agents not in validation:
            raise ValueError(
                f"agents: must be principal or one of {validation} for this run, got {agents!r}"
            )
        summary = read_json(exp / "runs" / f"seed{seed_index}" / f"{agents}.json")
        nudge = float(summary.get("nudge", 0.0))
        team, team_params = load_agents(exp, config, seed_index, agents)

        @jax.jit
        def act(state):
            actions, recs = team.greedy_actions(team_params, params, state)
            return recs, actions, team.payments(params, state, recs, actions, nudge)

    k_reset, k_steps = jax.random.split(jax.random.PRNGKey(key))
    _, state = coin_game.reset(config.game, k_reset)
    frames: dict[str, list] = {k: [] for k in ("positions", "coin", "colour")}
    steps: dict[str, list] = {k: [] for k in ("recs", "actions", "payments", "rewards")}
    for t in range(config.game.horizon):
        frames["positions"].append(np.asarray(state.positions))
        frames["coin"].append(np.asarray(state.coin))
        frames["colour"].append(int(state.colour))
        recs, actions, pay = act(state)
        _, state, info = coin_game.step(config.game, state, actions, jax.random.fold_in(k_steps, t))
        steps["recs"].append(np.asarray(recs))
        steps["actions"].append(np.asarray(actions))
        steps["payments"].append(np.asarray(pay))
        steps["rewards"].append(np.asarray(info.rewards))
        final = info.final_state
    frames["positions"].append(np.asarray(final.positions))
    frames["coin"].append(np.asarray(final.coin))
    frames["colour"].append(int(final.colour))
    out = {k: np.asarray(v) for k, v in {**frames, **steps}.items()}
    out.update(grid_size=config.game.grid_size, nudge=nudge, seed=seed_index, agents=agents)
    return out


def team_episode(exp: Path, seed_index: int = 0, key: int = 0) -> dict[str, Any]:
    """One episode of seed ``seed_index``'s trained principal's plan in any renderable env.

    Every agent follows its recommendation and is paid its contract. Returns ``frames`` (the
    environment's ``render(state)`` before each step and after the last), ``recs [T, n]``,
    ``payments [T, n]``, ``rewards [T, n]``; ``T`` is the episode's length (it may end early).

    Raises:
        ValueError: the environment cannot render.
    """
    import jax

    from contractrl.experiments.coin import _config, experiment_env, load_principal
    from contractrl.multiagent.algorithm3 import principal_learner

    config = _config(exp)
    env = experiment_env(config)
    if not callable(getattr(env, "render", None)):
        name = getattr(config, "env", "the environment")
        raise ValueError(f"{exp}: {name} cannot render (it has no render(state) method)")
    learner = principal_learner(env, config.dqn)
    params = load_principal(exp, config, seed_index)
    k_reset, k_steps = jax.random.split(jax.random.PRNGKey(key))
    obs, state = env.reset(k_reset)

    @jax.jit
    def act(obs, state):
        view = learner.encoder.view(learner.encoder.keep(obs), state)
        recs = learner.principal_recommendations(params["principal"], view)
        return recs, learner.contracts(params, view, recs, config.dqn.nudge)

    out: dict[str, list] = {k: [] for k in ("frames", "recs", "payments", "rewards")}
    for t in range(env.max_steps):
        out["frames"].append(np.asarray(env.render(state)))
        recs, pay = act(obs, state)
        reached = state
        obs, state, rewards, terminated, truncated, info = env.step(
            jax.random.fold_in(k_steps, t), state, recs
        )
        out["recs"].append(np.asarray(recs))
        out["payments"].append(np.asarray(pay))
        out["rewards"].append(np.asarray(rewards))
        if bool(terminated | truncated):
            reached = info.get("final_state")
            break
        reached = state
    if reached is not None:
        out["frames"].append(np.asarray(env.render(reached)))
    return {k: np.asarray(v) for k, v in out.items()}


def _policy_graph(run_dir: Path, game, spe, out: Path | None) -> Path:
    """The learned principal of the first run (``policy.json``) beside the SPE, as graphs."""
    from contractrl.core.solution import PrincipalPolicy
    from contractrl.learning.evaluation import policy_table
    from contractrl.plotting.policy_graph import policy_graph

    panels = {}
    learned = sorted((run_dir / "runs").glob("*/policy.json"))
    if learned:
        panels[f"learned ({learned[0].parent.name})"] = read_json(learned[0])["rows"]
    if spe is not None:
        exact = PrincipalPolicy(spe.action, spe.contract)
        panels["exact SPE"] = policy_table(game, exact, spe)
    if not panels:
        raise ValueError(f"{run_dir}: no learned policy yet and no SPE to draw")
    return policy_graph(game, panels, out or run_dir / "policy-graph.png")


def render(
    run_dir: Path, out: Path | None = None, seed_index: int = 0, agents: str = "principal"
) -> Path:
    """Draw ``run_dir``'s picture (module docstring); returns the file written.

    ``agents`` (Coin Game experiments): whose episode — ``principal`` (the plan) or a
    validation phase's agents (:func:`coin_episode`).
    """
    from contractrl.experiments.registry import experiments

    manifest = read_json(run_dir / "config.json")
    kind = manifest.get("experiment")
    spec = experiments().get(kind)
    picture = spec.picture if spec is not None else None
    if picture == "coin_episode":
        from contractrl.plotting.animation import coin_gif

        episode = coin_episode(run_dir, seed_index, agents=agents)
        suffix = "" if agents == "principal" else f"-{agents}"
        return coin_gif(episode, out or run_dir / f"episode-seed{seed_index}{suffix}.gif")
    if picture == "team_episode":
        from contractrl.plotting.animation import frames_gif

        episode = team_episode(run_dir, seed_index)
        return frames_gif(episode, out or run_dir / f"episode-seed{seed_index}.gif")
    if picture == "policy_tree":
        from contractrl.core.instance import load_instance
        from contractrl.core.solver import solve_spe
        from contractrl.plotting.animation import policy_tree

        game = load_instance(run_dir / manifest["instances"][0]["path"])
        spe = solve_spe(game)
        try:
            return policy_tree(game, spe, out or run_dir / "policy-tree.png")
        except ValueError:  # not a tree (cycles, merging paths): the state graph
            return _policy_graph(run_dir, game, spe if spe.ok else None, out)
    drawable = [name for name, s in experiments().items() if s.picture]
    raise ValueError(f"{run_dir}: cannot render a {kind!r} experiment ({', '.join(drawable)})")
