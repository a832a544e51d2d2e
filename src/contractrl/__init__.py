"""contractrl: principal-agent reinforcement learning with contracts.

The core (this namespace) needs only NumPy and SciPy: the game model, min-pay contracts, exact
subgame-perfect solvers and evaluation tools. Learners live in ``contractrl.learning`` and
``contractrl.multiagent`` (JAX), plots in ``contractrl.plotting`` (matplotlib).
"""

from contractrl.contracts import ContractTable, min_pay_contracts
from contractrl.evaluate import (
    AgentResponse,
    AuditReport,
    PolicyValues,
    agent_best_response,
    audit,
    evaluate_policies,
)
from contractrl.games import figure1, random_game, tree_mdp
from contractrl.instance import load_instance, parse_instance, save_instance
from contractrl.lp import ContractResult, ContractSolverError, ContractStatus, min_pay_contract
from contractrl.meta import meta_algorithm
from contractrl.model import InvalidGameError, PrincipalAgentMDP
from contractrl.solution import IterationRecord, PrincipalPolicy, SPESolution
from contractrl.solver import backward_induction, solve_spe

__version__ = "0.1.0"

__all__ = [
    "AgentResponse",
    "AuditReport",
    "ContractResult",
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
