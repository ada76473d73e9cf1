"""Settings: one reader of the environment, clear messages for bad values, secrets masked,
and the layout rules that keep it so (checked on the package's own source)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from repo_index.core.settings import Settings, SettingsError

PACKAGE = Path(__file__).resolve().parents[2] / "repo_index"
BIN = Path(sys.executable).parent


def test_bad_values_are_named_with_what_is_accepted(monkeypatch):
    monkeypatch.setenv("REPO_INDEX_CHROMA_PORT", "80OO")
    monkeypatch.setenv("REPO_INDEX_EMBEDDER", "openia")
    monkeypatch.setenv("REPO_INDEX_TIMEZONE", "Mars/Olympus")
    with pytest.raises(SettingsError) as caught:
        Settings.from_env()
    message = str(caught.value)
    assert "REPO_INDEX_TIMEZONE='Mars/Olympus'" in message and "IANA" in message
    assert "REPO_INDEX_CHROMA_PORT='80OO'" in message and "integer" in message
    assert "REPO_INDEX_EMBEDDER='openia'" in message and "'auto', 'openai' or 'local'" in message


def test_empty_means_default_and_unrelated_variables_are_not_read(monkeypatch, tmp_path):
    monkeypatch.setenv("REPO_INDEX_CHROMA_PORT", "")
    monkeypatch.setenv("HOME", str(tmp_path))  # a field named `home` must not read $HOME
    monkeypatch.setenv("TIMEZONE", "Mars/Olympus")
    monkeypatch.delenv("REPO_INDEX_HOME", raising=False)
    settings = Settings.from_env()
    assert settings.chroma_port == 8000 and settings.timezone == "UTC" and settings.home is None


def test_secrets_are_masked(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret-0123")
    monkeypatch.setenv("CHROMA_AUTH_TOKEN", "chroma-secret-4567")
    settings = Settings.from_env()
    assert settings.api_key() == "sk-very-secret-0123" and settings.chroma_auth_token() == "chroma-secret-4567"
    shown = repr(settings) + str(settings.model_dump())
    assert "sk-very-secret" not in shown and "chroma-secret" not in shown


def test_the_cli_reports_a_bad_variable_in_one_line(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "REPO_INDEX_CHROMA_PORT": "eighty", "REPO_INDEX_DATA_DIR": str(tmp_path)}
    done = subprocess.run([BIN / "repo-index", "list"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "REPO_INDEX_CHROMA_PORT='eighty'" in done.stderr and "Traceback" not in done.stderr


def _python_files():
    return sorted(PACKAGE.rglob("*.py"))


def test_the_environment_is_read_by_the_settings_module_only():
    readers = [f"{path.relative_to(PACKAGE)}:{n}" for path in _python_files() if path.name != "settings.py"
               for n, line in enumerate(path.read_text().splitlines(), 1) if "os.environ" in line or "getenv" in line]
    assert not readers


def test_nothing_under_core_imports_dagster():
    importers = []
    for path in (PACKAGE / "core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            importers += [f"{path.relative_to(PACKAGE)}: {n}" for n in names if n.split(".")[0] == "dagster"]
    assert not importers


def test_an_installed_copy_finds_the_project_through_dagster_home(monkeypatch, tmp_path):
    # A daemon started from another folder, on an installed (not checked-out) package: the
    # project root is Dagster's home, not the cwd, so it reads the registry the CLI writes.
    from repo_index.core import settings as settings_module

    monkeypatch.setattr(settings_module, "_CHECKOUT", tmp_path / "site-packages")
    home = tmp_path / "project"
    home.mkdir()
    (home / "dagster.yaml").write_text("{}\n")
    monkeypatch.delenv("REPO_INDEX_HOME", raising=False)
    monkeypatch.delenv("REPO_INDEX_REGISTRY", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    assert Settings.from_env().registry_path() == home / "repositories.yaml"
