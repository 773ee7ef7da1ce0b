"""The claims index (docs/claims.md) holds, and every name a client relies on has a test referring to it.

The names are derived from the code and the pages, never from a list kept here: the metrics from
``app.metrics``' registry and the metric table of docs/service.md, the JSON ``error`` texts from the
dict literals in ``app/``, the WebSocket error codes from ``ClientError(...)`` in ``app/`` and the
list in docs/websocket.md, the close codes from that page and from the code, the settings from
``app.settings.Settings``.  "A test refers to it" means the name appears in a file under ``tests/``
other than this one, as docs/claims.md describes.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
from prometheus_client import Counter, Gauge, Histogram

from app import metrics
from app.settings import Settings
from tests.support.settings_tree import setting_leaves

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
CLAIMS = DOCS / "claims.md"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


@cache
def sources() -> dict[str, str]:
    """Every test file but this one: path -> text."""
    here = Path(__file__).resolve()
    return {str(p.relative_to(ROOT)): p.read_text() for p in sorted((ROOT / "tests").rglob("*.py"))
            if p.resolve() != here}


def referring(pattern: str) -> list[str]:
    """The test files in which ``pattern`` (a regular expression) matches."""
    found = re.compile(pattern)
    return [path for path, text in sources().items() if found.search(text)]


def section(page: Path, heading: str) -> str:
    """The text of ``page`` under the heading ``heading`` (up to the next heading of that level or above)."""
    text = page.read_text()
    match = re.search(rf"^(#+) {re.escape(heading)}\s*$", text, re.M)
    assert match, f"{page.name}: no heading {heading!r}"
    level = len(match.group(1))
    rest = text[match.end():]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.M)
    return rest[:end.start()] if end else rest


# -- the index itself ---------------------------------------------------------------------------------


def named_tests() -> list[tuple[str, str]]:
    """(file, test) of every ``file::test`` in the index."""
    return re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", CLAIMS.read_text())


def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}


def test_the_index_names_tests_and_is_linked_from_development_md() -> None:
    assert len(named_tests()) >= 50
    assert "(claims.md)" in (DOCS / "development.md").read_text()


@pytest.mark.parametrize(("path", "name"), sorted(set(named_tests())), ids=str)
def test_every_test_the_index_names_exists(path: str, name: str) -> None:
    file = ROOT / path
    assert file.is_file(), f"docs/claims.md names {path}, which does not exist"
    assert name.startswith("test_") and name in defined_tests(file), f"docs/claims.md names {path}::{name}"


# -- metrics --------------------------------------------------------------------------------------------


def registered_metrics() -> set[str]:
    """The names the service's metrics are exposed under (a counter with ``_total``)."""
    names = set()
    for value in vars(metrics).values():
        collectors = value.values() if isinstance(value, dict) else [value]
        for collector in collectors:
            if isinstance(collector, Counter):
                names.add(collector._name + "_total")
            elif isinstance(collector, Gauge | Histogram):
                names.add(collector._name)
    return names


def documented_metrics() -> set[str]:
    """The backticked names in the first column of the metric table of docs/service.md."""
    table = section(DOCS / "service.md", "Observability")
    return {name for line in table.splitlines() if line.startswith("| `")
            for name in re.findall(r"`(\w+)`", line.split("|")[1])}


def test_the_metric_table_names_every_metric_and_no_other() -> None:
    assert len(registered_metrics()) >= 20
    assert documented_metrics() == registered_metrics()


@pytest.mark.parametrize("name", sorted(registered_metrics()))
def test_every_metric_has_a_test(name: str) -> None:
    assert referring(rf"\b{name}(_count|_sum|_bucket)?\b"), f"no test refers to the metric {name}"


# -- error codes and close codes ---------------------------------------------------------------------


def app_files() -> Iterator[tuple[Path, ast.AST]]:
    for path in sorted((ROOT / "app").rglob("*.py")):
        yield path, ast.parse(path.read_text())


def json_errors() -> set[str]:
    """Every fixed text the service answers as ``"error"``: the value of that key in a dict literal in app/."""
    found = set()
    for _, tree in app_files():
        for node in ast.walk(tree):
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if (isinstance(key, ast.Constant) and key.value == "error" and isinstance(value, ast.Constant)
                            and isinstance(value.value, str)):
                        found.add(value.value)
    return found


def ws_error_codes() -> set[str]:
    """The first argument of every ``ClientError(...)`` in app/."""
    found: set[str] = set()
    for _, tree in app_files():
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ClientError" and node.args
                    and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                found.add(node.args[0].value)
    return found


def documented_ws_error_codes() -> set[str]:
    text = (DOCS / "websocket.md").read_text()
    paragraph = text[text.index("Error codes:"):].split("\n\n")[0]
    return {code for code in re.findall(r"`([a-z_]+)`", paragraph) if code != "channel"}


def test_the_websocket_page_lists_every_error_code_and_no_other() -> None:
    assert documented_ws_error_codes() == ws_error_codes()


@pytest.mark.parametrize("error", sorted(json_errors()))
def test_every_json_error_the_service_answers_has_a_test(error: str) -> None:
    assert referring(rf"[\"']{re.escape(error)}[\"']"), f'no test quotes the error "{error}"'


@pytest.mark.parametrize("code", sorted(ws_error_codes()))
def test_every_websocket_error_code_has_a_test(code: str) -> None:
    assert referring(rf"[\"']{code}[\"']"), f'no test quotes the WebSocket error code "{code}"'


def listed_close_codes() -> set[int]:
    """The close codes docs/websocket.md lists (in bold after "Close codes:")."""
    text = (DOCS / "websocket.md").read_text()
    return {int(c) for c in re.findall(r"\*\*(\d{4})\*\*", text[text.index("Close codes:"):].split("\n\n")[0])}


def used_close_codes() -> set[int]:
    """The close codes app/ closes with: a number passed to a ``close(...)`` call, or a module constant of
    app/ws/ in the WebSocket range (``SLOW_CONSUMER = 1013``)."""
    found = set()
    for path, tree in app_files():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "close" and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, int):
                    found.add(arg.value)
            if (path.parent.name == "ws" and isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                    and isinstance(node.value.value, int) and 1000 <= node.value.value <= 4999):
                found.add(node.value.value)
    return found


def close_codes() -> set[int]:
    return listed_close_codes() | used_close_codes()


def test_the_websocket_page_lists_every_close_code_the_code_uses() -> None:
    assert used_close_codes(), "no close code found in app/"
    assert used_close_codes() <= listed_close_codes(), used_close_codes() - listed_close_codes()


@pytest.mark.parametrize("code", sorted(close_codes()))
def test_every_close_code_has_a_test(code: int) -> None:
    assert referring(rf"\b{code}\b"), f"no test refers to the close code {code}"


# -- settings -----------------------------------------------------------------------------------------


SETTINGS = [(path, owner) for path, owner, _ in setting_leaves()]


def env_name(path: tuple[str, ...]) -> str:
    return "ASYNCSTACK_" + "__".join(part.upper() for part in path)


def setting_is_referred_to(path: tuple[str, ...], owner: type) -> bool:
    """By its environment name, its dotted path's last two parts, or as a keyword or attribute in a test
    that names its owning type (or, for a section's own field, ``settings.<section>``)."""
    owners = {owner.__name__}
    if len(path) == 2:
        owners.add(f"settings.{path[0]}")
    if owner.__name__ == "IgniteConfig":
        owners.add("Client(")        # the Ignite client takes its config's fields as keywords
    field = path[-1]
    use = re.compile(rf"(\b{field}=|\.{field}\b)")
    for text in sources().values():
        if env_name(path) in text or ".".join(path[-2:]) in text:
            return True
        if use.search(text) and any(o in text for o in owners):
            return True
    return False


def listed_as_untested() -> set[str]:
    return set(re.findall(r"^- `([\w.]+)`$", section(CLAIMS, "Settings no test names yet"), re.M))


def test_every_setting_has_a_test_or_is_listed_as_having_none() -> None:
    assert len(SETTINGS) >= 100
    untested = {".".join(path) for path, owner in SETTINGS if not setting_is_referred_to(path, owner)}
    listed = listed_as_untested()
    assert listed <= {".".join(path) for path, _ in SETTINGS}, "docs/claims.md lists a setting that does not exist"
    assert not untested - listed, f"settings no test refers to (write one): {sorted(untested - listed)}"
    assert not listed - untested, f"now referred to by a test: remove from docs/claims.md: {sorted(listed - untested)}"


def test_every_asyncstack_name_the_documentation_uses_is_a_setting() -> None:
    known = {env_name(path) for path, _ in SETTINGS} | {"ASYNCSTACK_ENV_FILE"}
    sections = {env_name((name,)) for name in Settings.model_fields}
    used = {(page.name, name) for page in PAGES
            for name in re.findall(r"ASYNCSTACK_[A-Z0-9_]*[A-Z0-9]", page.read_text())}
    assert used
    unknown = sorted((page, name) for page, name in used
                     if name not in known and name not in sections and not name.endswith("__"))
    assert not unknown, unknown
