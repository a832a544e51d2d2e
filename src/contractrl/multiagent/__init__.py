"""Multi-agent contracts in any protocol environment: Algorithm 3, validation agents, baselines."""
