"""The domain layer stays free of HTTP and of the outside world: no Flask, marshmallow or
webargs imports, no network or mail library, and no adapter (the scheduler hands the
adapters in)."""

from __future__ import annotations

import ast
from pathlib import Path

SERVICE = Path(__file__).resolve().parents[2] / "service"
DOMAIN = SERVICE / "domain"
WEB = ("flask", "marshmallow", "webargs", "flask_smorest", "werkzeug")
OUTSIDE = ("smtplib", "http.client", "ssl", "socket", "requests", "urllib.request",
           "urllib3", "httpx", "service.adapters")


def imported_names(path: Path) -> list[str]:
    """Every module an ``import`` names, ``from a import b`` counting as ``a`` and ``a.b``."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def offenders(forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted(DOMAIN.rglob("*.py")):
        for name in imported_names(path):
            if any(name == module or name.startswith(f"{module}.") for module in forbidden):
                found.append(f"{path.relative_to(SERVICE)}: {name}")
    return sorted(set(found))


def test_domain_imports_no_web_framework():
    assert offenders(WEB) == []


def test_domain_imports_no_network_mail_library_or_adapter():
    assert offenders(OUTSIDE) == []


def test_the_check_sees_what_it_must_refuse(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import smtplib\nfrom http import client\nfrom urllib import request\n"
                     "import http.client as hc\nfrom service.adapters.smtp import SmtpChannel\n")
    names = imported_names(probe)
    for module in ("smtplib", "http.client", "urllib.request", "service.adapters"):
        assert any(n == module or n.startswith(f"{module}.") for n in names), module
