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


def _core_import_graph():
    """``module -> {core modules it imports}`` for the top-level core modules, counting every
    import statement (function-level ones too: they hide a cycle, they do not break it)."""
    import ast
    from pathlib import Path

    import contractrl

    root = Path(contractrl.__file__).parent
    modules = {p.stem for p in root.glob("*.py") if p.stem != "__init__"}
    graph = {}
    for name in sorted(modules):
        tree = ast.parse((root / f"{name}.py").read_text())
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for full in names:
                parts = full.split(".")
                if parts[0] == "contractrl" and len(parts) > 1 and parts[1] in modules:
                    deps.add(parts[1])
        graph[name] = deps - {name}
    return graph


def test_core_modules_import_without_cycles():
    """Issue 10: solver imported meta (inside a function), meta imported solver, evaluate
    imported solver and meta imported evaluate. The core's module graph is now acyclic."""
    graph = _core_import_graph()
    assert {"solver", "meta", "evaluate", "stages"} <= graph.keys()
    assert "solver" not in graph["meta"] and "solver" not in graph["evaluate"]
    state = {}

    def visit(node, path):
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", f"import cycle: {' -> '.join([*path, node])}"
        state[node] = "open"
        for dep in sorted(graph[node]):
            visit(dep, [*path, node])
        state[node] = "done"

    for module in sorted(graph):
        visit(module, [])
