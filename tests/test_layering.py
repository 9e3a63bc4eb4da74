"""Layering of the package, read from the source with `ast` (nothing is imported).

Two rules, over every import statement anywhere in a file (module level, inside a
function, under `if TYPE_CHECKING:`):

1. **No cycles** among the modules of `lagrangian_nn`: the graph with an edge from a
   module to each `lagrangian_nn` module it imports (`from .x import f` is an edge to
   `x`, `from .. import sub` one to the subpackage `sub`, whose `__init__` runs) has
   no strongly connected component of more than one module. A lazy import inside a
   function counts: it only hides the cycle from the import system.

2. **No side doors**, in `lagrangian_nn` and `experiments` (tests and benchmarks are
   white-box by design and are not checked):

   - a *private name* (one leading underscore, not a dunder) is imported, or read as
     an attribute of an imported module, only inside the package of the module that
     defines it: `lagrangian_nn.variational` may not import `_rate` from
     `lagrangian_nn._noether`;
   - a *private module* (`lagrangian_nn._tree`, `lagrangian_nn.nn._mlp`) is used only
     inside the package that holds it and that package's subpackages: the internal
     API of `lagrangian_nn` (`from .._tree import tree_dot` in
     `lagrangian_nn.optim`) is open to its subpackages, but not to `experiments`,
     nor is `lagrangian_nn.nn._mlp` open to `lagrangian_nn.symmetry`.

Violations that other modules still have are listed in `KNOWN`, each with what fixing
it needs; the test asserts that the violations found are exactly that list, so it
fails when a new one appears and when one is fixed without being struck off.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
LIBRARY = "lagrangian_nn"
CHECKED = (LIBRARY, "experiments")


def _module_name(root: pathlib.Path, path: pathlib.Path) -> tuple[str, bool]:
    parts = list(path.relative_to(root).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join(parts), is_package


def _sources(root: pathlib.Path, top: str) -> dict[str, tuple[pathlib.Path, bool]]:
    out = {}
    for path in sorted((root / top).rglob("*.py")):
        name, is_package = _module_name(root, path)
        out[name] = (path, is_package)
    return out


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _package_of(module: str, modules) -> str:
    """The package a module belongs to: itself for a package, else its parent."""
    if modules[module][1]:
        return module
    return module.rpartition(".")[0]


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _private_module_owner(module: str) -> str | None:
    """For `a.b._c.d`, the package `a.b` that holds the first private component;
    `None` if no component is private."""
    parts = module.split(".")
    for i, part in enumerate(parts[1:], start=1):
        if _is_private(part):
            return ".".join(parts[:i])
    return None


class _Imports(ast.NodeVisitor):
    """Collects, for one module, its import edges (module names, any depth) and
    its uses of modules and names: `(line, module, name or None)`."""

    def __init__(self, module: str, is_package: bool, modules):
        self.module, self.modules = module, modules
        self.package = module if is_package else module.rpartition(".")[0]
        self.edges: dict[str, int] = {}
        self.uses: list[tuple[int, str, str | None]] = []
        self.aliases: dict[str, str] = {}  # local name -> module it is bound to

    def _edge(self, target: str, line: int) -> None:
        if target in self.modules and target != self.module:
            self.edges.setdefault(target, line)

    def _resolve(self, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = self.package.split(".")
        base = base[: len(base) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))

    def visit_Import(self, node):
        for alias in node.names:
            self._edge(alias.name, node.lineno)
            self.uses.append((node.lineno, alias.name, None))
            if alias.asname:
                self.aliases[alias.asname] = alias.name
            else:
                top = alias.name.split(".")[0]
                self.aliases[top] = top

    def visit_ImportFrom(self, node):
        target = self._resolve(node)
        for alias in node.names:
            sub = f"{target}.{alias.name}"
            if sub in self.modules:
                self._edge(sub, node.lineno)
                self.uses.append((node.lineno, sub, None))
                self.aliases[alias.asname or alias.name] = sub
            else:
                self._edge(target, node.lineno)
                self.uses.append((node.lineno, target, alias.name))

    def visit_Attribute(self, node):
        chain = []
        base = node
        while isinstance(base, ast.Attribute):
            chain.append(base.attr)
            base = base.value
        if isinstance(base, ast.Name) and base.id in self.aliases:
            module = self.aliases[base.id]
            for attr in reversed(chain):
                if f"{module}.{attr}" in self.modules:
                    module = f"{module}.{attr}"
                    self.uses.append((node.lineno, module, None))
                else:
                    self.uses.append((node.lineno, module, attr))
                    break
            return  # the chain is read; its inner attributes are the same chain
        self.generic_visit(node)


def _scan(root: pathlib.Path, tops=CHECKED):
    """`(modules, scans)`: `{name: (path, is_package)}` and `{name: _Imports}` for
    every module under the folders `tops` of `root`."""
    modules = {}
    for top in tops:
        modules.update(_sources(root, top))
    scans = {}
    for name, (path, is_package) in modules.items():
        visitor = _Imports(name, is_package, modules)
        visitor.visit(ast.parse(path.read_text(), str(path)))
        scans[name] = visitor
    return modules, scans


def _side_doors(root, modules, scans) -> dict[tuple[str, str], str]:
    """`{(importer, what it uses): where and why}` for every use of another
    package's private name or module."""
    found = {}
    for importer, scan in scans.items():
        path = modules[importer][0].relative_to(root)
        home = _package_of(importer, modules)
        for line, module, name in scan.uses:
            if module not in modules:
                continue  # a third-party module
            owner = _private_module_owner(module)
            if owner is not None and not _within(importer, owner):
                found.setdefault(
                    (importer, module),
                    f"{path}:{line} uses {module}, a private module of {owner}",
                )
            if name is not None and _is_private(name):
                defined_in = _package_of(module, modules)
                if home != defined_in:
                    found.setdefault(
                        (importer, f"{module}.{name}"),
                        f"{path}:{line} uses {module}.{name}, a private name of "
                        f"package {defined_in}",
                    )
    return found


def _cycles(root, modules, scans) -> dict[frozenset, str]:
    """Strongly connected components (Tarjan) of more than one module of the
    library, each with the edges inside it."""
    graph = {
        m: [t for t in scans[m].edges if _within(t, LIBRARY)]
        for m in scans
        if _within(m, LIBRARY)
    }
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def connect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    out = {}
    for component in components:
        edges = [
            f"{modules[a][0].relative_to(root)}:{scans[a].edges[b]} imports {b}"
            for a in sorted(component)
            for b in graph[a]
            if b in component
        ]
        out[component] = "; ".join(edges)
    return out


# Violations still in the tree, each with what fixing it needs. Strike an entry off
# when it is fixed: the test fails on a stale entry as on a new violation.
KNOWN_SIDE_DOORS: dict[tuple[str, str], str] = {}
KNOWN_CYCLES: dict[frozenset, str] = {}


def _report(found: dict, known: dict) -> str:
    new = sorted(set(found) - set(known), key=str)
    stale = sorted(set(known) - set(found), key=str)
    lines = []
    if new:
        lines.append("New violations:")
        lines += [f"  {found[k]}" for k in new]
    if stale:
        lines.append("Fixed, but still listed as known (strike them off):")
        lines += [
            f"  {sorted(k) if isinstance(k, frozenset) else k} (owner: {known[k]})"
            for k in stale
        ]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def tree():
    return ROOT, *_scan(ROOT)


def test_no_side_doors(tree):
    found = _side_doors(*tree)
    assert set(found) == set(KNOWN_SIDE_DOORS), _report(found, KNOWN_SIDE_DOORS)


def test_no_import_cycles(tree):
    found = _cycles(*tree)
    assert set(found) == set(KNOWN_CYCLES), _report(found, KNOWN_CYCLES)


# --- The checker itself: each rule finds what it must and spares what it may -------


def _fake(tmp_path, files: dict[str, str]):
    """`(side doors, cycles)` of a tree of `files` (`{relative path: source}`)."""
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    tree = (tmp_path, *_scan(tmp_path))
    return _side_doors(*tree), _cycles(*tree)


def test_checker_finds_side_doors_and_spares_internal_api(tmp_path):
    doors, cycles = _fake(
        tmp_path,
        {
            "lagrangian_nn/__init__.py": "from ._noether import energy\n",
            "lagrangian_nn/_noether.py": "from ._conformal import _rate\n",
            "lagrangian_nn/_conformal.py": "_rate = 1\nrate = 2\n",
            "lagrangian_nn/_tree.py": "tree_dot = 1\n",
            "lagrangian_nn/nn/__init__.py": "from ._mlp import MLP\n",
            "lagrangian_nn/nn/_mlp.py": "MLP = 1\n",
            "lagrangian_nn/variational/__init__.py": "",
            "lagrangian_nn/variational/_charges.py": (
                "from .._conformal import rate\n"  # internal API: allowed
                "from .._tree import tree_dot\n"  # allowed
                "def f():\n"
                "    from .._conformal import _rate\n"  # private name: refused
                "    from ..nn._mlp import MLP\n"  # sibling's private module: refused
                "    from ..nn import MLP\n"  # public: allowed
            ),
            "experiments/__init__.py": "",
            "experiments/run.py": (
                "import lagrangian_nn as lnn\n"
                "from lagrangian_nn import energy, __name__\n"  # public, dunder: allowed
                "x = lnn._tree.tree_dot\n"  # private module from outside: refused
            ),
        },
    )
    assert set(doors) == {
        ("lagrangian_nn.variational._charges", "lagrangian_nn._conformal._rate"),
        ("lagrangian_nn.variational._charges", "lagrangian_nn.nn._mlp"),
        ("experiments.run", "lagrangian_nn._tree"),
    }, doors
    assert cycles == {}


def test_checker_finds_lazy_cycles(tmp_path):
    _, cycles = _fake(
        tmp_path,
        {
            "lagrangian_nn/__init__.py": "from . import optim\n",
            "lagrangian_nn/optim/__init__.py": "from ._run import run\n",
            "lagrangian_nn/optim/_run.py": "from ._chains import chain\nrun = 1\n",
            "lagrangian_nn/optim/_chains.py": (
                "def chain():\n    from ._run import run\n"  # lazy: still a cycle
            ),
            "lagrangian_nn/optim/_other.py": "from ._run import run\n",  # no cycle
        },
    )
    assert set(cycles) == {
        frozenset({"lagrangian_nn.optim._run", "lagrangian_nn.optim._chains"})
    }, cycles
