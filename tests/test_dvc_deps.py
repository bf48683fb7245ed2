"""dvc.yaml's code deps cannot drift: every repository file a stage imports is a dependency.

For each stage, the import closure of its ``python -m stages.<name>`` module inside the repository
(``sim2real`` and ``stages``, imports inside functions included, found with :mod:`ast`) must be
covered by the stage's ``deps`` (a folder dep covers every file below it). Otherwise editing an
imported module would not rerun the stage and ``dvc repro`` would serve stale outputs.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sim2real", "stages")


def module_file(name: str) -> Path | None:
    """The repository file of a dotted module name (package -> its __init__.py), else None."""
    base = ROOT.joinpath(*name.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def imported_modules(path: Path) -> set[str]:
    """Dotted names of repository modules ``path`` imports (absolute and relative imports)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    rel = path.relative_to(ROOT).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            names = [mod] + [f"{mod}.{a.name}" for a in node.names]  # `from pkg import module`
        else:
            continue
        for name in names:
            if name.split(".")[0] in PACKAGES:
                parts = name.split(".")
                for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__
                    out.add(".".join(parts[:i]))
    return out


def import_closure(module: str) -> set[Path]:
    """Every repository file that running ``python -m <module>`` can import."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        f = module_file(todo.pop())
        if f is None or f in seen:
            continue
        seen.add(f)
        todo.extend(imported_modules(f))
    return seen


def stage_commands() -> dict[str, tuple[str, list[str]]]:
    """stage name -> (its stages.<x> module, its literal deps)."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    out = {}
    for name, stage in spec.items():
        body = stage.get("do", stage)
        m = re.search(r"python -m (stages\.\w+)", body["cmd"])
        if m:
            out[name] = (m.group(1), [d for d in body.get("deps", []) if "${" not in d])
    return out


def covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT).as_posix()
    return any(rel == d.rstrip("/") or rel.startswith(d.rstrip("/") + "/") for d in deps)


def test_closure_finds_relative_and_nested_imports():
    closure = {p.relative_to(ROOT).as_posix() for p in import_closure("stages.depth_blur")}
    assert "stages/depth_blur.py" in closure and "sim2real/io.py" in closure
    assert "sim2real/physics/__init__.py" in closure and "sim2real/errors.py" in closure


def test_every_stage_depends_on_every_repo_file_it_imports():
    missing = {}
    for name, (module, deps) in stage_commands().items():
        gaps = sorted(p.relative_to(ROOT).as_posix() for p in import_closure(module) if not covered(p, deps))
        if gaps:
            missing[name] = gaps
    assert not missing, "dvc.yaml deps miss imported files:\n" + "\n".join(f"  {k}: {v}" for k, v in missing.items())
