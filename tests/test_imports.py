"""The package's import structure: every module imports on its own, and no import cycle exists
between modules: neither among the imports that run (module level; imports inside functions
and under ``TYPE_CHECKING`` do not run at import time) nor once the ``TYPE_CHECKING`` imports
are added (a cycle there still ties two layers together for the reader and the type checker)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import braintumor

PACKAGE = Path(braintumor.__file__).parent
# Optional extras: a module needing one is skipped when it is not installed.
OPTIONAL = ("fastapi", "uvicorn", "onnx", "onnxruntime", "multipart", "starlette")


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _top_level_imports(tree: ast.Module, typing: bool = False) -> list[ast.stmt]:
    """Import statements that run when the module is imported (with ``typing``, those under
    ``if TYPE_CHECKING:`` too)."""
    found: list[ast.stmt] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                found.append(node)
            elif isinstance(node, ast.If):
                test = ast.unparse(node.test)
                if typing or "TYPE_CHECKING" not in test:
                    visit(node.body)
                    visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)

    visit(tree.body)
    return found


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph(typing: bool = False) -> dict[str, set[str]]:
    """Module -> the braintumor modules its module-level imports execute (parent packages
    included: importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` first, except the
    importing module's own packages, which are already being initialised). With ``typing``,
    the imports under ``TYPE_CHECKING`` count too."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        for node in _top_level_imports(tree, typing):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                subs = [f"{base}.{alias.name}" for alias in node.names]
                # ``from pkg import submodule`` inside pkg needs only the submodule.
                own_package = base in _parents(name) or (is_package and base == name)
                if not (own_package and all(sub in modules for sub in subs)):
                    targets.append(base)
                targets += subs
            own = set(_parents(name))  # a module's own packages are initialised before it
            for target in targets:
                if target in modules:
                    parents = [p for p in _parents(target) if p not in own]
                    for module in [*parents, target]:
                        if module in modules and module != name:
                            graph[name].add(module)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def dependency_order(graph: dict[str, set[str]]) -> list[str]:
    """Modules with every module they import before them."""
    order: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> None:
        if node in done:
            return
        done.add(node)
        for nxt in sorted(graph[node]):
            visit(nxt)
        order.append(node)

    for node in sorted(graph):
        visit(node)
    return order


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_sees_known_imports():
    graph = import_graph()
    assert "braintumor.models.folder" in graph["braintumor.training.run"]
    assert "braintumor.tasks.catalog" in graph["braintumor.config"]
    assert "braintumor.tasks" in graph["braintumor.config"]  # the parent package runs first
    assert "braintumor.config" not in graph["braintumor.tasks.registry"]
    assert "braintumor.config" in import_graph(typing=True)["braintumor.tasks.registry"]


def test_no_import_cycle_between_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_import_cycle_even_counting_type_checking_imports():
    cycle = find_cycle(import_graph(typing=True))
    assert cycle is None, "import cycle (with TYPE_CHECKING imports): " + " -> ".join(cycle or [])


def test_no_engine_package_is_left():
    assert not (PACKAGE / "engine").exists()


def test_every_module_imports_in_a_fresh_interpreter_in_dependency_order():
    # The two __main__ modules run the command line when imported.
    order = [m for m in dependency_order(import_graph()) if not m.endswith(".__main__")]
    script = (
        "import importlib, sys\n"
        f"optional = {OPTIONAL!r}\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ModuleNotFoundError as error:\n"
        "        if (error.name or '').split('.')[0] not in optional:\n"
        "            raise\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, *order], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
