"""asyncrl's import layers: every module imports only from its own layer or the layers below it,
and no modules import each other in a circle. The imports are read with `ast` from every file of
asyncrl/, those inside functions included (a lazy import is still a dependency)."""

from __future__ import annotations

import ast

from helpers import REPO

# Lowest first. A module belongs to the layer of the longest prefix that names it or a package above
# it (`asyncrl` names only the package itself, not all of asyncrl/): the tools run
# with `python -m` from inside a package (the parameter page, the conformance sweep) are entry
# points, as train and enjoy are, since they drive the whole stack.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("utils", ("asyncrl", "asyncrl.utils")),  # `asyncrl` itself: the package's __version__
    ("config", ("asyncrl.config",)),
    ("envs", ("asyncrl.envs",)),
    ("model", ("asyncrl.model",)),
    ("algo", ("asyncrl.algo",)),
    ("pbt", ("asyncrl.pbt",)),
    ("experiment", ("asyncrl.experiment",)),
    ("runtime", ("asyncrl.runtime",)),
    ("launcher", ("asyncrl.launcher",)),
    ("entry points", ("asyncrl.train", "asyncrl.enjoy", "asyncrl.plot", "asyncrl.launch",
                      "asyncrl.benchmark", "asyncrl.scores", "asyncrl.config.docs",
                      "asyncrl.envs.conformance")),
]


def module_name(path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_imports() -> dict[str, set[str]]:
    """Module -> the asyncrl modules it imports (`from asyncrl.envs import atari` imports the
    module asyncrl.envs.atari; `from asyncrl.envs.registry import EnvFamily`, asyncrl.envs.registry)."""
    files = {module_name(p): p for p in (REPO / "asyncrl").rglob("*.py")}
    imports: dict[str, set[str]] = {}
    for module, path in files.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.split(".")[0] == "asyncrl"}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "asyncrl":
                for alias in node.names:
                    submodule = f"{node.module}.{alias.name}"
                    found.add(submodule if submodule in files else node.module)
        imports[module] = found - {module}
    return imports


def layer_of(module: str) -> int | None:
    best, level = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            under = module.startswith(prefix + ".") and prefix != "asyncrl"
            if (module == prefix or under) and len(prefix) > best:
                best, level = len(prefix), i
    return level


def cycles(imports: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other in a circle (Tarjan's strongly connected
    components of more than one module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in sorted(imports.get(module, ())):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(imports):
        if module not in index:
            visit(module)
    return found


def layer_problems(imports: dict[str, set[str]]) -> list[str]:
    problems = []
    for module, imported in sorted(imports.items()):
        level = layer_of(module)
        if level is None:
            problems.append(f"{module} is in no layer: add it to LAYERS")
            continue
        for other in sorted(imported):
            other_level = layer_of(other)
            if other_level is not None and other_level > level:
                problems.append(f"{module} ({LAYERS[level][0]}) imports {other} "
                                f"({LAYERS[other_level][0]}), a higher layer")
    problems += [f"modules that import each other: {' -> '.join(group)}" for group in cycles(imports)]
    return problems


def test_imports_point_down_and_never_in_a_circle():
    problems = layer_problems(package_imports())
    assert not problems, "\n".join(problems)


def test_the_check_finds_upward_imports_cycles_and_unplaced_modules():
    imports = {
        "asyncrl.config.parser": {"asyncrl.envs.registry", "asyncrl.utils.errors"},
        "asyncrl.envs.registry": {"asyncrl.envs.gym_envs", "asyncrl.config.params"},
        "asyncrl.envs.gym_envs": {"asyncrl.envs.registry"},
        "asyncrl.envs.conformance": {"asyncrl.train"},  # an entry point may import one
        "asyncrl.newthing": set(),
    }
    assert layer_problems(imports) == [
        "asyncrl.config.parser (config) imports asyncrl.envs.registry (envs), a higher layer",
        "asyncrl.newthing is in no layer: add it to LAYERS",
        "modules that import each other: asyncrl.envs.gym_envs -> asyncrl.envs.registry",
    ]
    assert layer_problems({"asyncrl.envs.registry": {"asyncrl.config.params"}}) == []


def test_every_module_is_read():
    imports = package_imports()
    assert "asyncrl.runtime.runner" in imports and "asyncrl.train" in imports
    assert "asyncrl.envs.registry" in imports["asyncrl.envs.command_line"]  # a top-level import
    assert "asyncrl.envs.envpool_backend" in imports["asyncrl.envs.command_line"]  # in a function
