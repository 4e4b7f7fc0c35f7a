#!/usr/bin/env python3
"""File-level import graph of a Rust crate's sources, and its cycles.

Usage: scripts/module_graph.py [crate/src] [--edges] [--layer model]

Every `use crate::a::b::…`, `super::…`, `self::…` and inline `crate::a::b` path in a
file's non-test code (up to its first `#[cfg(test)]`) becomes an edge from that file to
the file that defines the module it names (`a/b.rs` or `a/b/mod.rs`; the longest
prefix that is a file). Exit status 1 when the graph has a cycle; cycles are printed as
strongly connected components. `--layer DIR` also fails when a file outside `DIR/io/`
inside `DIR/` imports a file of `DIR/io/` (the architecture must not know its file side).
"""

import re
import sys
from pathlib import Path

USE_BLOCK = re.compile(r"\buse\s+((?:crate|super|self)(?:::[A-Za-z_][A-Za-z0-9_]*)*(?:::\{[^;]*\})?)\s*;", re.S)
INLINE = re.compile(r"\b((?:crate|super)(?:::[A-Za-z_][A-Za-z0-9_]*)+)")


def non_test_code(text: str) -> str:
    cut = re.search(r"^\s*#\[cfg\((all\()?test", text, re.M)
    code = text[: cut.start()] if cut else text
    code = re.sub(r"//[^\n]*", "", code)
    return code


def module_of(src: Path, f: Path) -> list[str]:
    rel = f.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return parts


def expand(path: str) -> list[str]:
    """`crate::a::{b, c::d}` -> [`crate::a::b`, `crate::a::c::d`] (one level of braces is enough here)."""
    m = re.match(r"(.*?)::\{(.*)\}$", path, re.S)
    if not m:
        return [path]
    head, body = m.groups()
    out, depth, cur = [], 0, ""
    for ch in body:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    res = []
    for item in out:
        item = re.sub(r"\s+", "", item).split(" as ")[0]
        if item:
            res.extend(expand(f"{head}::{item}"))
    return res


def resolve(parts: list[str], files: dict[tuple, Path]) -> Path | None:
    for n in range(len(parts), 0, -1):
        if tuple(parts[:n]) in files:
            return files[tuple(parts[:n])]
    return None


def main() -> int:
    args = sys.argv[1:]
    show_edges = "--edges" in args
    layer = None
    if "--layer" in args:
        layer = args[args.index("--layer") + 1]
    pos = [a for i, a in enumerate(args) if not a.startswith("--") and (i == 0 or args[i - 1] != "--layer")]
    src = Path(pos[0] if pos else "crate/src")
    files = {}
    for f in src.rglob("*.rs"):
        files[tuple(module_of(src, f))] = f
    edges: dict[Path, set[Path]] = {f: set() for f in files.values()}
    for key, f in files.items():
        code = non_test_code(f.read_text())
        paths = []
        for m in USE_BLOCK.finditer(code):
            paths.extend(expand(m.group(1)))
        paths.extend(m.group(1) for m in INLINE.finditer(code))
        own = list(key)
        is_mod_file = f.name in ("mod.rs", "lib.rs", "main.rs")
        for p in paths:
            segs = [s for s in p.split("::") if s]
            if not segs:
                continue
            if segs[0] == "crate":
                target = segs[1:]
            elif segs[0] == "self":
                target = own + segs[1:]
            else:
                base = own
                while segs and segs[0] == "super":
                    segs = segs[1:]
                    base = base[:-1]
                target = base + segs
            dst = resolve(target, files)
            # A parent `mod.rs` naming its children is structure, not a dependency.
            if dst is None or dst == f:
                continue
            if is_mod_file and module_of(src, dst)[: len(own)] == own and len(module_of(src, dst)) > len(own):
                continue
            edges[f].add(dst)

    if show_edges:
        for f in sorted(edges):
            for d in sorted(edges[f]):
                print(f"{f.relative_to(src)} -> {d.relative_to(src)}")

    # Tarjan's strongly connected components.
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(comp)

    for v in sorted(edges):
        if v not in index:
            visit(v)

    bad = 0
    for comp in sccs:
        bad = 1
        print("cycle: " + " <-> ".join(sorted(str(c.relative_to(src)) for c in comp)))
    if layer:
        io = src / layer / "io"
        for f, ds in sorted(edges.items()):
            inside = str(f).startswith(str(src / layer) + "/") and not str(f).startswith(str(io))
            for d in ds:
                if inside and str(d).startswith(str(io)):
                    bad = 1
                    print(f"layer: {f.relative_to(src)} imports its file side {d.relative_to(src)}")
    n_edges = sum(len(d) for d in edges.values())
    print(f"{len(edges)} files, {n_edges} imports between them, {len(sccs)} cycles")
    return bad


if __name__ == "__main__":
    sys.exit(main())
