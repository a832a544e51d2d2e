"""The learned principal (Algorithm 3) read off on every state of an exact export, and audited.

:func:`principal_tables` evaluates a trained :class:`~.algorithm3.PrincipalLearner`'s networks
on every state of an environment's exact export (:mod:`contractrl.envs.exact`): the greedy
recommended joint action and the contract it pays each follower, computed as in training and
evaluation (paper Section 5.1: ``b_i = max_a Q_i(s, a) − Q_i(s, ρ_i) + ξ`` from the principal's
agent network, the others following). :func:`audit_learned_principal` hands them to the exact
audit (:func:`contractrl.core.markov_audit.audit_principal`).
"""

from __future__ import annotations

import numpy as np

from contractrl.core.markov_audit import ContractAudit, audit_principal
from contractrl.envs.protocol import ExactExport


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
    steps = None if export.game.horizon is not None else getattr(learner.env, "max_steps", None)
    return audit_principal(export.game, plan, contracts, team_welfare, steps)
