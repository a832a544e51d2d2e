"""The exact references and audit of a team run, where the environment is small enough.

For an environment with an exact export (:mod:`contractrl.envs.exact`) of at most
:data:`MAX_STATES` states (the Coin Game on 3×3 and 4×4 with two agents, Escape Room),
``results.json`` gets, per seed, the exact audit of the trained principal
(:mod:`contractrl.core.markov_audit`, keys ``audit_*``; docs/outputs.md) and the exact team
optimum it is judged against. Larger games get neither (the learned baselines remain).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from contractrl.envs.exact import exact_export, has_exact_export

#: Largest exported game audited automatically (the audit is dense in states × joint actions).
MAX_STATES = 10_000

#: The flat ``results.json`` keys of an audit (``mean`` gets each with ``_se``).
AUDIT_KEYS = (
    "audit_welfare_of_optimum",
    "audit_plan_welfare",
    "audit_payments_learned",
    "audit_payments_exact",
    "audit_contract_bias",
    "audit_contract_rmse",
    "audit_underpaid_share",
    "audit_contested_share",
    "audit_follow_rate",
    "audit_spe_ratio",
    "audit_ic_ratio",
    "audit_spe_gain",
    "audit_ic_gain",
    "audit_follow_rate_random_ties",
    "audit_spe_ratio_random_ties",
    "audit_ic_ratio_random_ties",
    "audit_spe_gain_random_ties",
    "audit_ic_gain_random_ties",
    "audit_welfare_random_ties",
)

#: Per validation phase (``validation``, ``validation_nudged``): the learned agents, exactly.
AGENT_FIELDS = (
    "follow_rate",
    "welfare",
    "spe_gain",
    "ic_gain",
    "contested_share",
    "follow_rate_contested",
    "follow_rate_uncontested",
    "neutral_share",
    "welfare_relevant_follow_rate",
)
AGENT_PHASES = {"validation": "audit_validation", "validation_nudged": "audit_validation_nudged"}
AGENT_KEYS = tuple(
    f"{prefix}_{field}" for prefix in AGENT_PHASES.values() for field in AGENT_FIELDS
)


def exact_export_of(env, discount: float):
    """``env``'s exact export, or ``None`` (no capability, or more than :data:`MAX_STATES`)."""
    if not has_exact_export(env):
        return None
    try:
        export = exact_export(env, discount, max_states=MAX_STATES)
    except ValueError:  # too large to export
        return None
    return export


def team_references(export) -> dict[str, Any]:
    """The exact team optimum and the min-pay contracts of its plan, per episode.

    The plan is the payment-minimising welfare-optimal one (``α = 0``;
    :func:`.markov_eval.plan_summary`).
    """
    from contractrl.core.markov_eval import plan_summary
    from contractrl.core.markov_solver import principal_optimum

    summary = plan_summary(export.game, principal_optimum(export.game, 0.0))
    return {
        "source": f"contractrl.core.markov_solver on the exact export ({export.game.name})",
        "team_welfare": summary["welfare"],
        "payments": summary["payments"],
        "payment_share": summary["payment_share"],
        "follow_rate_random_ties": summary["follow_rate_random_ties"],
    }


def audit_rows(
    export,
    team_welfare: float,
    learner,
    seeds,
    load: Callable[[int], Any],
    load_agents: Callable[[int, str], Any] | None = None,
    phases: dict[int, dict[str, dict]] | None = None,
) -> dict[int, dict[str, float | None]]:
    """Per seed, the flat audit keys (:data:`AUDIT_KEYS`) of its trained principal.

    With ``load_agents(seed, phase) -> (learner, params)`` and each seed's phase summaries
    (``phases``, for the nudge each validation phase paid), also :data:`AGENT_KEYS`: the
    validation agents against the principal, exactly (:func:`.markov_audit.audit_agents`).

    ``load(seed)`` returns the principal's parameters, or raises ``FileNotFoundError`` or
    :class:`.store.DamagedCheckpointError` (then every key is ``None``; a damaged file is
    named on stderr).
    """
    import sys

    from contractrl.experiments.store import DamagedCheckpointError
    from contractrl.multiagent.audit import audit_learned_principal

    rows: dict[int, dict[str, float | None]] = {}
    for seed in seeds:
        try:
            params = load(seed)
        except (FileNotFoundError, DamagedCheckpointError) as exc:
            if isinstance(exc, DamagedCheckpointError):
                print(f"contractrl: no exact audit of seed {seed}: {exc}", file=sys.stderr)
            rows[seed] = dict.fromkeys(AUDIT_KEYS)
            continue
        audit = audit_learned_principal(learner, params, export, team_welfare)
        follow = {b.tie_rule: b for b in audit.best_response}
        agents = _agent_rows(
            export, learner, params, seed, load_agents, (phases or {}).get(seed, {})
        )
        rows[seed] = {
            "audit_welfare_of_optimum": audit.welfare_of_optimum,
            "audit_plan_welfare": audit.plan_welfare,
            "audit_payments_learned": audit.payments_learned,
            "audit_payments_exact": audit.payments_exact,
            "audit_contract_bias": audit.contract_bias,
            "audit_contract_rmse": audit.contract_rmse,
            "audit_underpaid_share": audit.underpaid_share,
            "audit_contested_share": audit.contested_share,
            "audit_follow_rate": follow["follow"].follow_rate,
            "audit_spe_ratio": follow["follow"].spe_ratio,
            "audit_ic_ratio": follow["follow"].ic_ratio,
            "audit_spe_gain": follow["follow"].spe_gain,
            "audit_ic_gain": follow["follow"].ic_gain,
            "audit_follow_rate_random_ties": follow["uniform"].follow_rate,
            "audit_spe_ratio_random_ties": follow["uniform"].spe_ratio,
            "audit_ic_ratio_random_ties": follow["uniform"].ic_ratio,
            "audit_spe_gain_random_ties": follow["uniform"].spe_gain,
            "audit_ic_gain_random_ties": follow["uniform"].ic_gain,
            "audit_welfare_random_ties": follow["uniform"].welfare,
            **agents,
        }
    return rows


def _agent_rows(export, learner, params, seed, load_agents, phases) -> dict[str, float | None]:
    """:data:`AGENT_KEYS` of one seed (``None`` where a phase or its parameters are missing)."""
    from contractrl.experiments.store import DamagedCheckpointError
    from contractrl.multiagent.audit import audit_learned_agents

    out: dict[str, float | None] = dict.fromkeys(AGENT_KEYS)
    if load_agents is None:
        return out
    for phase, prefix in AGENT_PHASES.items():
        if phase not in phases:
            continue
        try:
            agents_learner, agents_params = load_agents(seed, phase)
        except (FileNotFoundError, DamagedCheckpointError):
            continue
        nudge = float(phases[phase].get("nudge") or 0.0)
        found = audit_learned_agents(learner, params, agents_learner, agents_params, export, nudge)
        out.update({f"{prefix}_{field}": getattr(found, field) for field in AGENT_FIELDS})
    return out
