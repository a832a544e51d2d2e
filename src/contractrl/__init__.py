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
from contractrl.core.meta import meta_algorithm
from contractrl.core.model import InvalidGameError, PrincipalAgentMDP
from contractrl.core.simple_contracts import ContractComparison, ContractRow, compare_contracts
from contractrl.core.solution import IterationRecord, PrincipalPolicy, SPESolution
from contractrl.core.solver import backward_induction, solve_spe

__version__ = "0.1.0"

__all__ = [
    "AgentResponse",
    "AuditReport",
    "ContractComparison",
    "ContractResult",
    "ContractRow",
    "ContractSolverError",
    "ContractStatus",
    "ContractTable",
    "InvalidGameError",
    "IterationRecord",
    "PolicyValues",
    "PrincipalAgentMDP",
    "PrincipalPolicy",
    "SPESolution",
    "__version__",
    "agent_best_response",
    "audit",
    "backward_induction",
    "compare_contracts",
    "delegation",
    "delegation_game",
    "evaluate_policies",
    "figure1",
    "load_instance",
    "meta_algorithm",
    "min_pay_contract",
    "min_pay_contracts",
    "parse_instance",
    "random_game",
    "save_instance",
    "solve_spe",
    "tree_mdp",
]
