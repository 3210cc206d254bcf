"""cProfile summaries: own time per package and the busiest functions, per event."""

from __future__ import annotations

import cProfile
import pstats
from typing import Any

from bench.report import ROOT


def package_of(filename: str, func: str) -> str:
    if filename == "~":
        return "C builtins: " + ("epoll wait" if "poll" in func else "other")
    path = filename.replace("\\", "/")
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    root = str(ROOT) + "/"
    if path.startswith(root):
        parts = path[len(root) :].split("/")
        return ".".join(parts[:2]) if parts[0] == "services" else parts[0]
    if "/lib/python3" in path:
        mod = path.split("/lib/python3", 1)[1].split("/", 2)[1].removesuffix(".py")
        return f"stdlib {mod}"
    return path


def summarise(prof: cProfile.Profile, n: int, rate: float) -> dict[str, Any]:
    stats = pstats.Stats(prof)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    by_pkg: dict[str, float] = {}
    funcs: list[tuple[str, float]] = []
    total = 0.0
    for (filename, line, func), (_cc, _nc, tt, _ct, _callers) in raw.items():
        pkg = package_of(filename, func)
        by_pkg[pkg] = by_pkg.get(pkg, 0.0) + tt
        total += tt
        short = filename.rsplit("site-packages/", 1)[-1].replace(str(ROOT) + "/", "")
        funcs.append((f"{short}:{line}({func})", tt))
    funcs.sort(key=lambda f: -f[1])
    return {
        "n": n,
        "rate": rate,
        "total_ms": 1000 * total / n,
        "packages": sorted(((k, 1000 * v / n) for k, v in by_pkg.items()), key=lambda x: -x[1]),
        "functions": [(f, 1000 * t / n) for f, t in funcs[:12]],
    }
