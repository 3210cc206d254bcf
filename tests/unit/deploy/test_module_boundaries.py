"""Boundaries of deploy/ and bench/ that import-linter (rooted at contracts and services) does not
see: no module imports another's ``_private`` name, no bench script imports another (they share
``bench/harness``), and what benchmarks take from the tests comes from ``tests/support`` only."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
OURS = ("bench", "contracts", "deploy", "services", "tests")
BENCH_SHARED = ("bench.harness", "bench.machine", "bench.report")


def imports(package: str) -> Iterator[tuple[str, str, list[str]]]:
    """(file, imported module, imported names) of every import of ours under ``package``."""
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module.split(".")[0] in OURS:
                    yield str(path.relative_to(ROOT)), node.module, [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in OURS:
                        yield str(path.relative_to(ROOT)), alias.name, []


def private_imports(package: str) -> list[str]:
    return [
        f"{file}: from {module} import {name}"
        for file, module, names in imports(package)
        for name in names
        if name.startswith("_") and not name.startswith("__")
    ]


def test_deploy_and_bench_import_no_private_name() -> None:
    assert private_imports("deploy") + private_imports("bench") == []


def test_no_bench_script_imports_another() -> None:
    crossing = [
        f"{file}: {module}"
        for file, module, _ in imports("bench")
        if module.startswith("bench.")
        and not module.startswith(BENCH_SHARED)
        and not file.startswith("bench/harness/")
    ]
    assert crossing == []


def test_the_harness_imports_no_bench_script() -> None:
    scripts = [
        f"{file}: {module}"
        for file, module, _ in imports("bench")
        if file.startswith("bench/harness/")
        and module.startswith("bench.")
        and not module.startswith(BENCH_SHARED)
    ]
    assert scripts == []


def test_benchmarks_take_from_the_tests_only_tests_support() -> None:
    reaching = [
        f"{file}: {module}"
        for file, module, _ in imports("bench")
        if module.split(".")[0] == "tests" and not module.startswith("tests.support")
    ]
    assert reaching == []
