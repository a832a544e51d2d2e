"""Deep RL learners (JAX): networks, replay, schedules, in-loop contracts, Algorithm 2."""
