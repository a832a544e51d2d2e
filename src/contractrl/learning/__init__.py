"""Algorithm 2 in JAX (:mod:`.algorithm2`) and what it is built from.

Networks, replay, schedules, in-loop min-pay contracts and oracle evaluation; the speed
machinery: row-sparse Adam (:mod:`.optim`), networks on a batch's distinct inputs
(:mod:`.distinct`), target networks as tables (:mod:`.target_tables`).
"""
