"""contractrl: principal-agent reinforcement learning with contracts.

This namespace re-exports the public API of the exact core, :mod:`contractrl.core` (NumPy and
SciPy only): the game model, min-pay contracts, exact subgame-perfect solvers and evaluation
tools. Learners live in ``contractrl.learning`` and
``contractrl.multiagent`` (JAX), plots in ``contractrl.plotting`` (matplotlib).
"""

from contractrl.core import delegation
from contractrl.core.contracts import ContractTable, min_pay_contracts
from contractrl.core.delegation import delegation_game
from contractrl.core.evaluate import (
    AgentResponse,
    AuditReport,
    PolicyValues,
    agent_best_response,
    audit,
    evaluate_policies,
)
from contractrl.core.games import figure1, random_game, tree_mdp
from contractrl.core.instance import load_instance, parse_instance, save_instance
from contractrl.core.lp import ContractResult, ContractSolverError, ContractStatus, min_pay_contract
from contractrl.core.markov_eval import (
    BestResponse,
    DeviationReport,
    ProfileTotals,
    best_response,
    deviation_report,
    evaluate_profile,
    follow_policy,
)
from contractrl.core.markov_game import MarkovGame
from contractrl.core.markov_solver import (
    PrincipalSolution,
    SelfishQ,
    TeamSolution,
    principal_optimum,
    selfish_q,
    team_optimum,
)
from contractrl.core.meta import meta_algorithm
from contractrl.core.model import InvalidGameError, PrincipalAgentMDP
from contractrl.core.simple_contracts import ContractComparison, ContractRow, compare_contracts
from contractrl.core.solution import IterationRecord, PrincipalPolicy, SPESolution
from contractrl.core.solver import backward_induction, solve_spe

__version__ = "0.1.0"

__all__ = [
    "AgentResponse",
    "AuditReport",
    "BestResponse",
    "ContractComparison",
    "ContractResult",
    "ContractRow",
    "ContractSolverError",
    "ContractStatus",
    "ContractTable",
    "DeviationReport",
    "InvalidGameError",
    "IterationRecord",
    "MarkovGame",
    "PolicyValues",
    "PrincipalAgentMDP",
    "PrincipalPolicy",
    "PrincipalSolution",
    "ProfileTotals",
    "SPESolution",
    "SelfishQ",
    "TeamSolution",
    "__version__",
    "agent_best_response",
    "audit",
    "backward_induction",
    "best_response",
    "compare_contracts",
    "delegation",
    "delegation_game",
    "deviation_report",
    "evaluate_policies",
    "evaluate_profile",
    "figure1",
    "follow_policy",
    "load_instance",
    "meta_algorithm",
    "min_pay_contract",
    "min_pay_contracts",
    "parse_instance",
    "principal_optimum",
    "random_game",
    "save_instance",
    "selfish_q",
    "solve_spe",
    "team_optimum",
    "tree_mdp",
]
