"""nerfpipe says it runs on Python 3.10 (pyproject's requires-python): nothing in it may need 3.11 unless
it is guarded. Checked on the source with ast, so this runs on any Python."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted((REPO / "nerfpipe").rglob("*.py"))
MODULES_311 = {"tomllib", "wsgiref.types"}
"""Standard-library modules that appeared in Python 3.11."""
NAMES_311 = {("typing", "Self"), ("typing", "LiteralString"), ("typing", "Never"), ("typing", "assert_never"),
             ("typing", "assert_type"), ("typing", "reveal_type"), ("typing", "Required"), ("typing", "NotRequired"),
             ("datetime", "UTC"), ("enum", "StrEnum"), ("asyncio", "TaskGroup"), ("asyncio", "timeout")}
"""Names that standard modules gained in Python 3.11."""


def _guarded(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Inside ``if sys.version_info ...:`` or a ``try`` that catches ImportError."""
    while node in parents:
        parent = parents[node]
        if isinstance(parent, ast.If) and "version_info" in ast.unparse(parent.test):
            return True
        if isinstance(parent, ast.Try) and any(h.type is not None and re.search(r"ImportError|ModuleNotFoundError",
                                                                             ast.unparse(h.type)) for h in parent.handlers):
            return True
        node = parent
    return False


def test_sources_parse_as_python_310():
    for path in SOURCES:
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 10))  # no 3.11+ syntax (except*, ...)


def test_no_311_only_import_unguarded():
    offenders = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(), filename=str(path))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                bad = [a.name for a in node.names if a.name in MODULES_311]
            elif isinstance(node, ast.ImportFrom):
                bad = [node.module] if node.module in MODULES_311 else [
                    f"{node.module}.{a.name}" for a in node.names if (node.module, a.name) in NAMES_311]
            else:
                continue
            if bad and not _guarded(node, parents):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} {', '.join(bad)}")
    assert not offenders, "3.11-only imports without a guard: " + "; ".join(offenders)


def test_the_check_finds_an_unguarded_tomllib(tmp_path):
    tree = ast.parse("import tomllib\nif sys.version_info >= (3, 11):\n    import tomllib\n")
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.Import)]
    assert [_guarded(n, parents) for n in imports] == [False, True]
