"""ftjax's imports only point down its floors, and no ftjax modules import each other in a cycle.

Every `import` and `from ... import` of every module (also those inside functions) is read with `ast`;
an import of a package's name that is not a submodule counts as an import of the package's
`__init__`. The floors, lowest first:
0: data, models, distance, hessian, generalization and the small shared modules;
1: methods; 2: configs (the schema, which names the methods); 3: train (state, steps, loop,
checkpointing of train states, experiment); 4: the drivers (`ftjax.runs`, `ftjax` itself, `experiments`).
"""

import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FLOORS = {
  "ftjax.data": 0,
  "ftjax.models": 0,
  "ftjax.distance": 0,
  "ftjax.hessian": 0,
  "ftjax.generalization": 0,
  "ftjax.tree_paths": 0,
  "ftjax.config_validation": 0,
  "ftjax.config_layout": 0,
  "ftjax.label_noise": 0,
  "ftjax.parallel": 0,
  "ftjax.plots": 0,
  "ftjax.progress_logging": 0,
  "ftjax.metrics_writer": 0,
  "ftjax.layer_groups": 0,
  "ftjax.optim": 0,
  "ftjax.checkpoint_io": 0,
  "ftjax.methods": 1,
  "ftjax.configs": 2,
  "ftjax.train": 3,
  "ftjax.runs": 4,
  "ftjax": 4,
  "experiments": 4,
}


def module_files(root: str, package: str) -> dict[str, str]:
  """{dotted module name: path} of every .py file of `package` under `root` (a package's __init__.py
  is the package itself)."""
  modules = {}
  for folder, _, files in os.walk(os.path.join(root, package)):
    for name in files:
      if name.endswith(".py"):
        parts = os.path.relpath(os.path.join(folder, name), root)[: -len(".py")].split(os.sep)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = os.path.join(folder, name)
  return modules


def imported_modules(path: str, module: str, is_package: bool, known: set[str]) -> set[str]:
  """The modules among `known` that the module `module` (file `path`) imports anywhere in its code."""
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  found = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      found.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:  # relative: from the module's own package upwards
        parts = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
        base = ".".join(parts + ([base] if base else []))
      for alias in node.names:
        found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
  return {name for name in found if name in known}


def import_graph(root: str, packages: tuple[str, ...]) -> dict[str, set[str]]:
  """{module: the modules of `packages` it imports} for every module of `packages` under `root`."""
  files = {name: path for package in packages for name, path in module_files(root, package).items()}
  known = set(files)
  return {
    name: imported_modules(path, name, path.endswith("__init__.py"), known) - {name} for name, path in files.items()
  }


def floor_of(module: str, floors: dict[str, int]) -> int | None:
  """The floor of the longest prefix (a whole dotted component) of `module` in `floors`; None if none."""
  matches = [prefix for prefix in floors if module == prefix or module.startswith(prefix + ".")]
  return floors[max(matches, key=len)] if matches else None


def floor_violations(graph: dict[str, set[str]], floors: dict[str, int]) -> list[str]:
  """'a (floor i) imports b (floor j)' for each import up to a higher floor, and 'a has no floor' for
  each module the table does not place."""
  problems = [f"{module} has no floor" for module in sorted(graph) if floor_of(module, floors) is None]
  for module in sorted(graph):
    low = floor_of(module, floors)
    for target in sorted(graph[module]):
      high = floor_of(target, floors)
      if low is not None and high is not None and high > low:
        problems.append(f"{module} (floor {low}) imports {target} (floor {high})")
  return problems


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """The strongly connected sets of two or more modules (each sorted): modules that import each
  other, directly or through others (Tarjan's algorithm)."""
  index, low, stack, on_stack, components = {}, {}, [], set(), []

  def visit(node: str) -> None:
    index[node] = low[node] = len(index)
    stack.append(node)
    on_stack.add(node)
    for target in sorted(graph.get(node, ())):
      if target not in index:
        visit(target)
        low[node] = min(low[node], low[target])
      elif target in on_stack:
        low[node] = min(low[node], index[target])
    if low[node] == index[node]:
      component = []
      while True:
        member = stack.pop()
        on_stack.discard(member)
        component.append(member)
        if member == node:
          break
      if len(component) > 1:
        components.append(sorted(component))

  for node in sorted(graph):
    if node not in index:
      visit(node)
  return components


def test_ftjax_imports_point_down_without_cycles():
  graph = import_graph(REPO, ("ftjax", "experiments"))
  assert "ftjax.train.loop" in graph and "ftjax.runs.stages" in graph  # the walk found the package
  assert "ftjax.train.loop" in graph["ftjax.runs.stages"]
  assert floor_violations(graph, FLOORS) == []
  assert import_cycles(graph) == []


def test_no_library_module_below_the_drivers_imports_the_training_loop():
  graph = import_graph(REPO, ("ftjax",))
  loop = {"ftjax.train.loop", "ftjax.train"}  # the package's __init__ re-exports train_and_evaluate
  importers = {module for module, targets in graph.items() if targets & loop} - loop
  assert importers and all(floor_of(module, FLOORS) == 4 for module in importers), sorted(importers)


def write_package(root, files: dict[str, str]) -> None:
  for name, text in files.items():
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


FAKE_FLOORS = {"pkg": 1, "pkg.low": 0, "pkg.high": 1}


@pytest.mark.parametrize(
  "files, floors, violations, cycles",
  [
    (
      {
        "pkg/__init__.py": "",
        "pkg/low/__init__.py": "from pkg.low.a import f\n",
        "pkg/low/a.py": "def f():\n  from pkg.high import b  # inside a function\n  return b\n",
        "pkg/high/__init__.py": "",
        "pkg/high/b.py": "import pkg.low.a\n",
      },
      FAKE_FLOORS,
      ["pkg.low.a (floor 0) imports pkg.high.b (floor 1)"],
      [["pkg.high.b", "pkg.low.a"]],
    ),
    (
      {
        "pkg/__init__.py": "",
        "pkg/low/__init__.py": "",
        "pkg/low/a.py": "from . import c\n",
        "pkg/low/c.py": "from pkg.low import a\n",
        "pkg/high/__init__.py": "",
        "pkg/high/b.py": "from ..low import a\n",
        "pkg/stray.py": "",
      },
      {"pkg.low": 0, "pkg.high": 1},
      ["pkg has no floor", "pkg.stray has no floor"],
      [["pkg.low.a", "pkg.low.c"]],
    ),
    (
      {
        "pkg/__init__.py": "",
        "pkg/low/__init__.py": "X = 1\n",
        "pkg/low/a.py": "import os\nfrom pkg.low import X\n",
        "pkg/high/__init__.py": "",
        "pkg/high/b.py": "from pkg.low import a, X\nfrom pkg import low\n",
      },
      FAKE_FLOORS,
      [],
      [],
    ),
  ],
)
def test_checker_finds_upward_imports_and_cycles_in_a_fake_package(tmp_path, files, floors, violations, cycles):
  write_package(tmp_path, files)
  graph = import_graph(str(tmp_path), ("pkg",))
  assert floor_violations(graph, floors) == violations
  assert import_cycles(graph) == cycles
