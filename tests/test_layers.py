"""The package's import graph follows the data flow: a stage imports only earlier stages, and no file cycles."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "sprig"

# Rank of each subpackage along corpus -> passages -> vectors -> index -> candidates -> context -> answer.
# A module may import its own subpackage and any of strictly lower rank; equal ranks never import each other.
LAYERS = {
    "core": 0,
    "corpus": 1, "kernels": 1,
    "encoders": 2,
    "index": 3,
    "indexer": 4, "retriever": 4,
    "rag": 5, "train": 5,
    "eval": 6,
    "api": 7,
}
# Modules directly in sprig/: the package (re-exports the core types) and `python -m sprig` (the CLI).
TOP = {"sprig": "core", "sprig.__main__": "api"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every sprig module a file imports, at module level or inside functions."""
    out: set[str] = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in out if m == "sprig" or m.startswith("sprig.")}


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in ROOT.rglob("*.py")}
    return {name: {m for m in imports(p) if m in files and m != name} for name, p in files.items()}


def stage(module: str) -> str | None:
    """The subpackage a module belongs to (None for the modules directly in sprig/)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and module not in TOP) else None


def test_every_subpackage_has_a_rank():
    subpackages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    assert subpackages == set(LAYERS)


def test_imports_follow_the_data_flow():
    bad = []
    for module, targets in graph().items():
        src = stage(module)
        for target in targets:
            dst = stage(target)
            if dst is None:  # the root package: version and the re-exported core types
                ok = True
            elif src is None:
                ok = dst == TOP[module]
            else:
                ok = dst == src or LAYERS[dst] < LAYERS[src]
            if not ok:
                bad.append(f"{module} -> {target}")
    assert not bad, "imports against the data flow:\n" + "\n".join(sorted(bad))


def test_no_import_cycles_between_files():
    g = graph()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in g:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"
