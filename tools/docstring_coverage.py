"""Docstring coverage of the public functions, classes and methods of some packages.

Public means: no leading underscore on the name nor on an enclosing class, and not nested inside a function.
A property's setter and deleter count with its getter.
Qt and pyqtgraph overrides (camelCase methods such as ``paintEvent`` or ``mousePressEvent``) are left out: their
meaning is the framework's. Prints one line per package (and with ``--missing`` each public name without a
docstring) and exits 1 when a package is below ``--min`` percent.

    python tools/docstring_coverage.py --min 80 viewer/dicom viewer/ui
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Iterator
from pathlib import Path

CAMEL_CASE = re.compile(r"^[a-z]+[A-Z]\w*$")


def _is_accessor(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A property's setter or deleter: the getter's docstring covers it."""
    return any(isinstance(d, ast.Attribute) and d.attr in ("setter", "deleter") for d in node.decorator_list)


def public_defs(tree: ast.Module) -> Iterator[tuple[str, bool]]:
    """``(qualified name, has docstring)`` for each public function, class and method of a module."""

    def walk(body: list[ast.stmt], prefix: str, in_class: bool) -> Iterator[tuple[str, bool]]:
        for node in body:
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                continue
            if node.name.startswith("_"):
                continue
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and (
                (in_class and CAMEL_CASE.match(node.name)) or _is_accessor(node)
            ):
                continue
            name = f"{prefix}{node.name}"
            yield name, ast.get_docstring(node) is not None
            if isinstance(node, ast.ClassDef):
                yield from walk(node.body, f"{name}.", True)

    yield from walk(tree.body, "", False)


def package_coverage(package: Path) -> tuple[int, int, list[str]]:
    """Documented count, public count and the undocumented names (``module:name``) of one package folder."""
    documented, total, missing = 0, 0, []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        module = path.relative_to(package).with_suffix("").as_posix()
        for name, has_doc in public_defs(tree):
            total += 1
            if has_doc:
                documented += 1
            else:
                missing.append(f"{package.as_posix()}/{module}.py:{name}")
    return documented, total, missing


def main(argv: list[str] | None = None) -> int:
    """Print each package's coverage; 1 when one is below ``--min``, else 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("packages", nargs="+", type=Path, help="package folders, e.g. viewer/dicom")
    parser.add_argument(
        "--min", type=float, default=0.0, help="lowest acceptable coverage per package, percent"
    )
    parser.add_argument("--missing", action="store_true", help="list the public names without a docstring")
    args = parser.parse_args(argv)
    failed = False
    for package in args.packages:
        if not package.is_dir():
            parser.error(f"{package} is not a folder")
        documented, total, missing = package_coverage(package)
        percent = 100.0 * documented / total if total else 100.0
        below = percent < args.min
        failed |= below
        mark = f"  below {args.min:g}%" if below else ""
        print(
            f"{package.as_posix():<20} {documented:4d} / {total:4d} public defs documented  {percent:5.1f}%{mark}"
        )
        if args.missing:
            for name in missing:
                print(f"    {name}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
