#!/usr/bin/env python3
"""Size of a Rust crate's sources: non-test lines per file, and its longest functions.

Usage: scripts/code_stats.py [crate/src] [--over N] [--top N] [--all] [--with-tests]

Non-test lines are a file's lines outside test code. Test code is every item under a
`#[cfg(test)]` or `#[cfg(all(test, …))]` attribute (an inline `mod tests { … }`, a test
helper `impl`), and every file such an item declares (`#[cfg(test)] mod tests;` makes
`tests.rs` a test file). For a file whose only test code is one trailing `mod tests`
this is the count of lines up to its first `#[cfg(test)]`. Blank and comment lines
count: the number is what a reader scrolls through.

A function's length runs from its `fn` line to its closing brace. Braces inside
comments, strings and character literals are ignored. Test functions are left out
unless `--with-tests` is given.

Prints the files over `--over` non-test lines (default 500; `--all`: every file) and
the `--top` longest functions (default 10).
"""

import argparse
import re
import sys
from pathlib import Path

TEST_CFG = re.compile(r"#\[cfg\(\s*(?:test\s*\)|all\((?:[^\]]*?[(,]\s*)?test\b)")
FN = re.compile(r"\bfn\s+([A-Za-z_][A-Za-z0-9_]*)")
IMPL = re.compile(r"\b(impl|trait)\b")
MOD_DECL = re.compile(r"\bmod\s+([A-Za-z_][A-Za-z0-9_]*)\s*;")


def strip(text: str) -> str:
    """`text` with comments, string and char literals blanked (newlines kept)."""
    out = list(text)
    i, n = 0, len(text)

    def blank(a: int, b: int) -> None:
        for j in range(a, min(b, n)):
            if out[j] != "\n":
                out[j] = " "

    while i < n:
        c = text[i]
        nxt = text[i + 1] if i + 1 < n else ""
        prev = text[i - 1] if i > 0 else ""
        if c == "/" and nxt == "/":
            j = text.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif c == "/" and nxt == "*":
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
        elif c in "rb" and not (prev.isalnum() or prev == "_"):
            m = re.match(r"b?r(#*)\"", text[i:])
            if m:
                end = text.find('"' + m.group(1), i + m.end())
                j = n if end < 0 else end + 1 + len(m.group(1))
                blank(i + 1, j - 1)
                i = j
            else:
                i += 1
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            blank(i + 1, j)
            i = j + 1
        elif c == "'":
            # A char literal ('x', '\n', '\u{7f}'); otherwise a lifetime ('a).
            if nxt == "\\":
                j = text.find("'", i + 2)
                j = n if j < 0 else j
                blank(i + 1, j)
                i = j + 1
            elif i + 2 < n and text[i + 2] == "'":
                blank(i + 1, i + 2)
                i += 3
            else:
                i += 1
        else:
            i += 1
    return "".join(out)


def item_end(code: str, start: int) -> int:
    """Offset just past the item starting at or after `start` (its `;` or closing brace)."""
    depth, i, n = 0, start, len(code)
    while i < n:
        c = code[i]
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif c == ";" and depth == 0:
            return i + 1
        elif c == "{" and depth == 0:
            return match_brace(code, i)
        i += 1
    return n


def match_brace(code: str, open_at: int) -> int:
    depth = 0
    for i in range(open_at, len(code)):
        if code[i] == "{":
            depth += 1
        elif code[i] == "}":
            depth -= 1
            if depth == 0:
                return i + 1
    return len(code)


def skip_attributes(code: str, i: int) -> int:
    while True:
        while i < len(code) and code[i].isspace():
            i += 1
        if not code.startswith("#[", i):
            return i
        depth = 0
        while i < len(code):
            if code[i] == "[":
                depth += 1
            elif code[i] == "]":
                depth -= 1
                if depth == 0:
                    i += 1
                    break
            i += 1


def line_of(code: str, offset: int) -> int:
    return code.count("\n", 0, offset) + 1


def child_dir(f: Path) -> Path:
    """Where the files of modules declared in `f` live."""
    if f.name in ("mod.rs", "lib.rs", "main.rs"):
        return f.parent
    return f.with_suffix("")


class Source:
    def __init__(self, path: Path):
        self.path = path
        self.text = path.read_text(encoding="utf-8")
        self.code = strip(self.text)
        self.lines = self.text.count("\n") + (0 if self.text.endswith("\n") else 1)
        self.test_lines: set[int] = set()
        self.test_children: list[Path] = []
        for m in TEST_CFG.finditer(self.code):
            s = skip_attributes(self.code, m.start())
            e = item_end(self.code, s)
            item = self.code[s:e]
            decl = MOD_DECL.match(item.strip().removeprefix("pub ").removeprefix("pub(crate) "))
            if decl:
                d = child_dir(path)
                for cand in (d / f"{decl.group(1)}.rs", d / decl.group(1) / "mod.rs"):
                    if cand.exists():
                        self.test_children.append(cand)
            self.test_lines.update(range(line_of(self.code, m.start()), line_of(self.code, e) + 1))

    def non_test_lines(self) -> int:
        return self.lines - len([n for n in self.test_lines if n <= self.lines])

    def functions(self, with_tests: bool):
        impls = []
        for m in IMPL.finditer(self.code):
            # The block the header opens; its type is the last path before `{`.
            brace = self.code.find("{", m.end())
            semi = self.code.find(";", m.end())
            if brace < 0 or (0 <= semi < brace):
                continue
            header = self.code[m.end() : brace]
            impls.append((brace, match_brace(self.code, brace), self_type(header)))
        for m in FN.finditer(self.code):
            start_line = line_of(self.code, m.start())
            if not with_tests and start_line in self.test_lines:
                continue
            end = item_end(self.code, m.end())
            if self.code[end - 1] != "}":
                continue  # a declaration without body
            owner = [t for (a, b, t) in impls if a < m.start() < b and t]
            name = f"{owner[-1]}::{m.group(1)}" if owner else m.group(1)
            yield (line_of(self.code, end - 1) - start_line + 1, start_line, name)


def self_type(header: str) -> str:
    """`<T> Foo<T> for Bar<'a> where …` -> `Bar`."""
    h = header.strip()
    if h.startswith("<"):
        depth = 0
        for i, c in enumerate(h):
            depth += (c == "<") - (c == ">")
            if depth == 0:
                h = h[i + 1 :]
                break
    h = re.split(r"\bwhere\b", h)[0]
    h = re.split(r"\bfor\b", h)[-1]
    h = re.sub(r"<.*", "", h, flags=re.S).strip()
    return h.split("::")[-1].split()[0] if h.split() else ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", nargs="?", default="crate/src")
    ap.add_argument("--over", type=int, default=500, help="list files over this many non-test lines")
    ap.add_argument("--top", type=int, default=10, help="how many of the longest functions")
    ap.add_argument("--all", action="store_true", help="list every file")
    ap.add_argument("--with-tests", action="store_true", help="count test functions too")
    a = ap.parse_args()
    src = Path(a.src)
    if not src.is_dir():
        print(f"{src}: not a directory", file=sys.stderr)
        return 2
    sources = {f: Source(f) for f in sorted(src.rglob("*.rs"))}
    test_files: set[Path] = set()
    todo = [c for s in sources.values() for c in s.test_children]
    while todo:
        f = todo.pop()
        if f in test_files or f not in sources:
            continue
        test_files.add(f)
        # Modules declared inside a test file are test files too.
        d = child_dir(f)
        for m in MOD_DECL.finditer(sources[f].code):
            for cand in (d / f"{m.group(1)}.rs", d / m.group(1) / "mod.rs"):
                if cand in sources:
                    todo.append(cand)

    rows = []
    for f, s in sources.items():
        rel = f.relative_to(src)
        if f in test_files:
            rows.append((0, s.lines, f"{rel} (test file)"))
        else:
            rows.append((s.non_test_lines(), s.lines, str(rel)))
    rows.sort(key=lambda r: (-r[0], r[2]))
    shown = [r for r in rows if a.all or r[0] > a.over]
    print(f"files of {src} " + ("" if a.all else f"over {a.over} non-test lines") + f" ({len(shown)} of {len(rows)}):")
    print(f"{'non-test':>8} {'total':>6}  file")
    for non_test, total, name in shown:
        print(f"{non_test:>8} {total:>6}  {name}")

    fns = []
    for f, s in sources.items():
        if f in test_files and not a.with_tests:
            continue
        for length, line, name in s.functions(a.with_tests or f in test_files):
            fns.append((length, f"{f.relative_to(src)}:{line}", name))
    fns.sort(key=lambda r: (-r[0], r[1]))
    kind = "functions" if a.with_tests else "non-test functions"
    print(f"\n{a.top} longest {kind}:")
    print(f"{'lines':>6}  function  (file:line)")
    for length, where, name in fns[: a.top]:
        print(f"{length:>6}  {name}  ({where})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
