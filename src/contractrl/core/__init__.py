"""The exact core (NumPy + SciPy only): the game model, min-pay contracts, exact solvers.

* :mod:`.model` — :class:`~.model.PrincipalAgentMDP`, the game (docs/model.md §1);
* :mod:`.games`, :mod:`.instance` — the paper's games and random ones; instance files;
* :mod:`.lp`, :mod:`.contracts` — the min-pay LP (paper Eq. 3, docs/model.md §2) and its batched
  closed forms;
* :mod:`.sweep`, :mod:`.stages`, :mod:`.solver`, :mod:`.meta` — subgame-perfect equilibria by
  backward induction, the fixed point and the meta-algorithm (paper Algorithm 1, docs/model.md §3);
* :mod:`.solution`, :mod:`.evaluate`, :mod:`.report` — results, exact policy evaluation and
  audits, printed tables.

Everything public is re-exported by ``contractrl`` itself (``import contractrl as crl``).
"""
