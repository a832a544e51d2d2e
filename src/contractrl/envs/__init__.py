"""Environments: batched pure-function JAX environments and their Gymnasium / PettingZoo facades."""


def _register() -> None:
    """Register the Gymnasium id ``contractrl/Agent-v0`` (when Gymnasium is installed)."""
    try:
        import gymnasium
    except ImportError:  # the learning extra is not installed
        return
    if "contractrl/Agent-v0" not in gymnasium.registry:
        gymnasium.register("contractrl/Agent-v0", entry_point="contractrl.envs.gym:make_agent_env")


_register()
