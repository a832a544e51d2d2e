"""Environments: batched pure-function JAX environments and their Gymnasium / PettingZoo facades."""
