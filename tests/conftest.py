import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/reference.py


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs after each test module.

    XLA's CPU JIT maps memory for every executable it keeps; a test worker that compiles for
    most of the suite passes the kernel's limit on memory mappings (``vm.max_map_count``,
    65,530 by default) and aborts inside a compile. Clearing between modules keeps the count
    at what one module needs (programs are not shared across modules anyway).
    """
    yield
    jax = sys.modules.get("jax")
    if jax is not None:
        jax.clear_caches()
        import gc

        gc.collect()
