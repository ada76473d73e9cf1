"""The rules that know a secret by its context (secret_rules/context.toml, kubernetes.py)
leave look-alikes alone; the rule files stay cheap to apply and quiet on ordinary code.

Fake secrets are built at run time (see test_secret_kinds.py)."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

from repo_index.core.source.content import decode_source
from repo_index.core.source.secret_rules.engine import SKIPPED, rule_set
from repo_index.core.source.secrets import redact
from repo_index_tests.core.test_secret_kinds import ALNUM, HEX, fake, password

PW = password()

# (path, text): placeholders, variables, prompts and code that only names the context
LOOK_ALIKES = [
    ("conf/app.properties", "db.password=${DB_PASSWORD}\nadmin.password=\nldap.password=<set me>\n"),
    ("conf/service.ini", "[db]\npassword = %(db_password)s\npasswd_file = /etc/app/passwd\n"),
    ("app/settings.py", 'password = "' + PW + '"\n'),  # a literal in code: only notebooks/configs get this rule
    ("ci/publish.sh", 'docker login -u ci -p "$REGISTRY_PASSWORD" registry.example.com\n'
                      "echo \"$PW\" | docker login --password-stdin -u ci registry.example.com\n"),
    ("db/shell.sh", "mysql -u root -p -P 3306 shop\nmysql --password=\"$MYSQL_PWD\" shop\n"),
    ("api/client.py", 'headers = {"Authorization": f"Bearer {token}"}\n'
                      'auth = {"Authorization": "Basic " + encoded}\n'),
    ("docs/netrc.md", "The default password is printed once.\nEach machine has a password.\n"),
    ("app/settings.py", 'SECRET_KEY = os.environ["SECRET_KEY"]\nsecret_key_length = 40\n'),
    ("notebooks/a.ipynb", '{"source": ["password = getpass.getpass()\\n", "session=requests.Session()"]}\n'),
]


@pytest.mark.parametrize("path, text", LOOK_ALIKES, ids=[p for p, _ in LOOK_ALIKES])
def test_look_alikes_are_left_alone(path, text):
    assert redact(text, path) == (text, {})


def test_a_rule_for_some_file_types_holds_for_those_only():
    text = f"password = {PW}\n"
    assert redact(text, "conf/db.cnf")[1] == {"config-password": 1}
    assert redact(text, "conf/db.txt") == (text, {})


def test_kubernetes_secret_values_go_configmaps_and_templates_stay():
    secret_value = fake(ALNUM, 24)
    text = (
        "apiVersion: v1\nkind: ConfigMap\ndata:\n  log_level: debug\n---\n"
        'apiVersion: v1\nkind: "Secret"\ndata:\n  api_key: ' + secret_value + "\n"
        "  token: {{ .Values.token | b64enc }}\n  empty: \"\"\nmetadata:\n  name: app\n"
    )
    out, found = redact(text, "k8s/all.yaml")
    assert found == {"kubernetes-secret": 1}
    assert secret_value not in out and "log_level: debug" in out and "{{ .Values.token | b64enc }}" in out
    assert "name: app" in out and out.count("\n") == text.count("\n")


def test_secrets_are_replaced_where_they_stand():
    key = fake(HEX, 32)
    text = "a = 1\nconst k = 'S" + f"K{key}'\nb = 2\n"
    out, found = redact(text, "x.js")
    assert out == "a = 1\nconst k = '[REDACTED:twilio-api-key]'\nb = 2\n" and found == {"twilio-api-key": 1}


def test_the_rule_files_load_and_the_noisy_rule_is_left_out():
    ids = {r.id for r in rule_set().rules}
    assert len(ids) > 200 and "huggingface-access-token" in ids and "netrc-password" in ids
    assert not SKIPPED & ids


def test_every_rule_compiles_though_each_is_compiled_when_first_woken():
    """A rule's regexes compile lazily; a pattern RE2 rejects must still fail here, not in
    the run that first meets its keyword."""
    rules = rule_set()
    for rule in rules.rules:
        assert rule.regex is not None and (rule.path_pattern is None or rule.path is not None), rule.id
        for allow in rule.allowlists:
            assert len(allow.regexes) == len(allow.regex_patterns) and len(allow.paths) == len(allow.path_patterns)
    assert len(rules.allowlist.regexes) == len(rules.allowlist.regex_patterns)


# What redact() finds in the standard library, inspected by hand (bench/redaction.py
# --show): test data that really is a credential. Anything else is a false positive.
STDLIB_EXPECTED = {
    ("netrc-password", "test/test_netrc.py"),  # netrc files the tests parse
    ("url-password", "test/test_urllib.py"),  # http://user:pass@python.org
    ("url-password", "test/test_urllib2.py"),  # http://joe:password@proxy.example.com
    ("url-password", "test/test_urllib2net.py"),
    ("url-password", "test/test_urlparse.py"),  # http://User:Pass@www.python.org
    ("authorization-header", "test/test_xmlrpc.py"),  # ('Authorization', 'Basic ...')
}


def test_the_standard_library_has_no_redactions_beyond_its_test_credentials():
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [p for p in root.rglob("*.py") if "site-packages" not in p.parts]
    assert len(files) > 500
    found = set()
    for path in files:
        try:
            text = decode_source(path.read_bytes())
        except (OSError, UnicodeDecodeError):
            continue
        rel = path.relative_to(root).as_posix()
        found |= {(kind, rel) for kind in redact(text, rel)[1]}
    assert found <= STDLIB_EXPECTED


def test_a_change_of_the_rule_files_changes_the_chunker_fingerprint(tmp_path):
    """The chunk table is reused only under the same fingerprint: a new rule re-chunks."""
    import shutil
    import subprocess
    import sys

    import repo_index

    def fingerprint(package_parent: Path) -> str:
        code = "from repo_index.core.chunk.table import chunker_fingerprint; print(chunker_fingerprint())"
        return subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(package_parent)}, cwd=package_parent,
                              capture_output=True, text=True, check=True).stdout.strip()

    copy = tmp_path / "repo_index"
    shutil.copytree(Path(repo_index.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = fingerprint(tmp_path)
    rules = copy / "core" / "source" / "secret_rules" / "context.toml"
    rules.write_text(rules.read_text() + '\n[[rules]]\nid = "x"\nregex = \'\'\'x{40}\'\'\'\nkeywords = ["xxxx"]\n')
    assert fingerprint(tmp_path) != before
