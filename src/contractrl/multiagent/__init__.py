"""Multi-agent contracts: the Coin Game learners (Algorithm 3, validation, baselines)."""
