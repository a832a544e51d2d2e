"""The learned principal (Algorithm 3) read off on every state of an exact export, and audited.

:func:`principal_tables` evaluates a trained :class:`~.algorithm3.PrincipalLearner`'s networks
on every state of an environment's exact export (:mod:`contractrl.envs.exact`): the greedy
recommended joint action and the contract it pays each follower, computed as in training and
evaluation (paper Section 5.1: ``b_i = max_a Q_i(s, a) − Q_i(s, ρ_i) + ξ`` from the principal's
agent network, the others following). :func:`audit_learned_principal` hands them to the exact
audit (:func:`contractrl.core.markov_audit.audit_principal`); :func:`audit_learned_agents` does
the same for learned agents facing it (Algorithm 3's validation agents;
:func:`contractrl.core.markov_audit.audit_agents`).
"""

from __future__ import annotations

import numpy as np

from contractrl.core.markov_audit import AgentsAudit, ContractAudit, audit_agents, audit_principal
from contractrl.envs.protocol import ExactExport


def _steps(learner, export: ExactExport) -> int | None:
    """The episode length an infinite-horizon export is evaluated over (the env's limit)."""
    return None if export.game.horizon is not None else getattr(learner.env, "max_steps", None)


def principal_tables(learner, params, export: ExactExport, nudge: float | None = None):
    """The learned plan ``[1, S]`` (joint-action indices) and contracts ``[1, S, n]`` (float64).

    Args:
        learner: the :class:`~.algorithm3.PrincipalLearner` the parameters belong to.
        params: its trained parameters (``{"agent", "principal"}``).
        export: the environment's exact export.
        nudge: ``ξ`` added to every contract (default: the learner's own, as its evaluation).
    """
    import jax

    nudge = learner.config.nudge if nudge is None else nudge
    encoder = learner.encoder
    views = encoder.view(encoder.keep(export.obs), export.states)

    @jax.jit
    def read(params, views):
        recs = learner.principal_recommendations(params["principal"], views)
        return learner.joint_index(recs), learner.contracts(params, views, recs, nudge)

    plan, contracts = jax.device_get(read(params, views))
    contracts = np.maximum(np.asarray(contracts, np.float64), 0.0)  # float32 round-off below 0
    return np.asarray(plan, np.int64)[None], contracts[None]


def audit_learned_principal(
    learner, params, export: ExactExport, team_welfare: float, nudge: float | None = None
) -> ContractAudit:
    """:func:`principal_tables` audited exactly (:func:`.markov_audit.audit_principal`)."""
    plan, contracts = principal_tables(learner, params, export, nudge)
    return audit_principal(export.game, plan, contracts, team_welfare, _steps(learner, export))


def agents_tables(learner, params, principal_params, export: ExactExport) -> list[np.ndarray]:
    """The greedy learned agents' policies on every exported state: ``n`` one-hot ``[1, S, A]``.

    Args:
        learner: the agents' :class:`~.agents.AgentsLearner` (e.g. validation agents).
        params: their trained parameters.
        principal_params: the frozen principal they face (``{"agent", "principal"}``).
        export: the environment's exact export.
    """
    import jax

    encoder = learner.encoder
    views = encoder.view(encoder.keep(export.obs), export.states)
    actions, _ = jax.device_get(jax.jit(learner.greedy_actions)(params, principal_params, views))
    onehot = np.eye(learner.num_actions)[np.asarray(actions)]  # [S, n, A]
    return [onehot[None, :, i] for i in range(learner.n)]


def audit_learned_agents(
    principal_learner, principal_params, agents_learner, agents_params, export, nudge: float
) -> AgentsAudit:
    """Learned agents facing the learned principal (contracts with nudge ``nudge``), exactly."""
    plan, contracts = principal_tables(principal_learner, principal_params, export, nudge)
    policies = agents_tables(agents_learner, agents_params, principal_params, export)
    return audit_agents(export.game, plan, contracts, policies, _steps(agents_learner, export))
