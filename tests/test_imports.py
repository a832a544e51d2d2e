"""The core imports only NumPy and SciPy (no JAX, no matplotlib)."""

import subprocess
import sys


def test_core_does_not_import_heavy_stacks():
    code = (
        "import sys, contractrl, contractrl.solver, contractrl.lp, contractrl.meta, "
        "contractrl.instance, contractrl.report, contractrl.experiments.cli; "
        "bad = [m for m in ('jax', 'matplotlib', 'torch', 'flax') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
