"""The image installs requirements.txt and CI installs requirements-dev.txt on a clean clone: a module imported by
shipped code that neither file pins fails CI before any test runs (it happened once, when requirements.txt was
emptied by accident), so this reads every import instead of trusting the environment the suite happens to run in."""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("shared", "gateway", "services", "deploy")
# Import name -> distribution name, where they differ.
DISTRIBUTION = {"jwt": "pyjwt", "argon2": "argon2-cffi", "yaml": "pyyaml", "opentelemetry": "opentelemetry-sdk",
                "secantus": "secantusdb", "minio": "minio", "bson": "pymongo", "fpdf": "fpdf2",
                "noto_cjk_sans_otc": "noto-cjk-sans-otc"}
DESIGN_CARD = {"flask", "kombu", "pika", "mongoengine", "minio", "opentelemetry-sdk", "gunicorn"}
DEV_ONLY_MODULES = {"deploy/docstore.py"}  # the one module allowed to import the test surrogate


def pinned(path: Path) -> set[str]:
    names = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.add(re.split(r"[\[=<>!~ ]", line, maxsplit=1)[0].lower())
    return names


def third_party_imports(folder: str) -> dict[str, set[str]]:
    local = {p.name for p in ROOT.iterdir()} | {p.stem for p in ROOT.iterdir()}
    found: dict[str, set[str]] = {}
    for source in (ROOT / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                tops = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                if top not in sys.stdlib_module_names and top not in local and top != "__future__":
                    found.setdefault(top, set()).add(str(source.relative_to(ROOT)))
    return found


def test_requirements_pin_the_design_card_packages():
    assert DESIGN_CARD <= pinned(ROOT / "requirements.txt")


def test_every_import_of_shipped_code_is_pinned_for_the_image():
    runtime = pinned(ROOT / "requirements.txt")
    missing = {}
    for folder in SHIPPED:
        for module, files in third_party_imports(folder).items():
            if files <= DEV_ONLY_MODULES:
                continue
            if DISTRIBUTION.get(module, module).lower() not in runtime:
                missing[module] = sorted(files)
    assert not missing, f"imported by shipped code but not in requirements.txt: {missing}"


def test_the_test_document_store_stays_out_of_the_image():
    assert "secantusdb" not in pinned(ROOT / "requirements.txt")  # GPL-2.0 surrogate: dev and tests only
    assert "secantusdb" in pinned(ROOT / "requirements-dev.txt")
    users = {f for f in third_party_imports("deploy").get("secantus", set())}
    for folder in ("shared", "gateway", "services"):
        assert "secantus" not in third_party_imports(folder)
    assert users <= DEV_ONLY_MODULES
