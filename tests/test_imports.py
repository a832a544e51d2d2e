"""The core imports only NumPy and SciPy (no JAX, no matplotlib)."""

import subprocess
import sys


def test_core_does_not_import_heavy_stacks():
    code = (
        "import sys, contractrl, contractrl.core.solver, contractrl.core.lp, contractrl.core.meta, "
        "contractrl.core.instance, contractrl.core.report, contractrl.experiments.cli; "
        "bad = [m for m in ('jax', 'matplotlib', 'torch', 'flax') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def _core_files():
    """The core package's source files."""
    from pathlib import Path

    import contractrl

    return sorted((Path(contractrl.__file__).parent / "core").glob("*.py"))


def _imported_names(path):
    """Every absolute import in ``path``, at any level: ``module`` and ``module.member``."""
    import ast

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names)


def _core_import_graph():
    """``module -> {core modules it imports}`` for the top-level core modules, counting every
    import statement (function-level ones too: they hide a cycle, they do not break it)."""
    files = {p.stem: p for p in _core_files() if p.stem != "__init__"}
    graph = {}
    for name, path in sorted(files.items()):
        deps = set()
        for full in _imported_names(path):
            parts = full.split(".")
            if parts[:2] == ["contractrl", "core"] and len(parts) > 2 and parts[2] in files:
                deps.add(parts[2])
        graph[name] = deps - {name}
    return graph


def _assert_acyclic(graph):
    """Fail naming the first cycle of ``graph`` (``module -> {modules it imports}``)."""
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


def test_core_modules_import_without_cycles():
    """Issue 10: solver imported meta (inside a function), meta imported solver, evaluate
    imported solver and meta imported evaluate. The core's module graph is now acyclic."""
    graph = _core_import_graph()
    assert {"solver", "meta", "evaluate", "stages"} <= graph.keys()
    assert "solver" not in graph["meta"] and "solver" not in graph["evaluate"]
    _assert_acyclic(graph)


def test_core_imports_only_numpy_scipy_and_itself():
    """The layout's dependency rule: ``contractrl.core`` imports NumPy, SciPy, the standard
    library and itself (plus the private helpers ``contractrl._*``), at any level."""
    import sys

    allowed = {"numpy", "scipy", "yaml"} | set(sys.stdlib_module_names)
    for path in _core_files():
        for name in _imported_names(path):
            parts = name.split(".")
            ok = parts[0] in allowed or parts[:2] == ["contractrl", "core"]
            ok = ok or (parts[0] == "contractrl" and parts[1].startswith("_"))
            assert ok, f"{path.name} imports {name}"


def _package_import_graph():
    """``module -> {package modules it imports}`` over every module of ``contractrl``, counting
    every import statement at any level (absolute or relative)."""
    import ast
    from pathlib import Path

    import contractrl

    root = Path(contractrl.__file__).parent
    modules = {}
    for path in root.rglob("*.py"):
        parts = ("contractrl", *path.relative_to(root).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*up, *([node.module] if node.module else [])])
                names = [base, *(f"{base}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            deps |= {n for n in names if n in modules and n != name}
        graph[name] = deps
    return graph


def test_the_package_has_no_import_cycle():
    """No module imports, at any level, a module that imports it back (the layout's rule; the
    experiment drivers and the Coin Game's facade used to import each other in circles)."""
    graph = _package_import_graph()
    assert {"contractrl.experiments.coin", "contractrl.envs.protocol"} <= graph.keys()
    _assert_acyclic(graph)
