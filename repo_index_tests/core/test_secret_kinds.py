"""Every kind of secret that reached the chunk table, Chroma and the embedding server
(issue 16, item 8) is redacted on the real chunking path: a repository of ordinary files,
one per kind, goes through `chunk_repository`, and no chunk holds the secret while the
file itself is still indexed.

The fake secrets have the real shapes but are built here at run time from a seeded
generator, so this file holds nothing that a secret scanner flags.
"""

from __future__ import annotations

import base64
import json
import random

import pytest

from repo_index.core.chunk.repository import chunk_repository

HEX = "0123456789abcdef"
LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
ALNUM = LETTERS + "0123456789"
B64 = ALNUM + "+/"
_rng = random.Random(16_8)


def fake(alphabet: str, n: int) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


def password() -> str:
    return fake(ALNUM, 10) + "-" + fake(ALNUM, 6)


def basic(user: str) -> str:
    return base64.b64encode(f"{user}:{password()}".encode()).decode()


HF = "hf" + "_" + fake(LETTERS, 34)
DIGITALOCEAN = "dop" + "_v1_" + fake(HEX, 64)
SHOPIFY = "shp" + "at_" + fake(HEX, 32)
VAULT = "hv" + "s." + fake(ALNUM + "_-", 95)
AZURE = fake(B64, 86) + "=="
TWILIO = "S" + "K" + fake(HEX, 32)
BASIC = basic("deploy")
BEARER = fake(ALNUM, 40)
SECRET_KEY = fake(B64, 40)
PROPERTIES_PW, INI_PW = password(), password()
KUBE_USER, KUBE_PW, KUBE_CONFIG_PW = (base64.b64encode(password().encode()).decode() for _ in range(3))
DOCKER_AUTH = basic("robot")
NETRC_PW, DOCKER_LOGIN_PW, MYSQL_PW, NOTEBOOK_PW = password(), password(), password(), password()
SESSION = fake(ALNUM + "%._-", 48)

NOTEBOOK = json.dumps({"cells": [
    {"cell_type": "code", "execution_count": 1, "metadata": {},
     "source": ["settings = load_settings()\n", "print(settings)"],
     "outputs": [{"output_type": "stream", "name": "stdout",
                  "text": [f"{{'api_url': 'https://api.example.com', 'api_password': '{NOTEBOOK_PW}'}}\n"]}]},
    {"cell_type": "code", "execution_count": 2, "metadata": {},
     "source": ["response = login()\n", "response.headers['Set-Cookie']"],
     "outputs": [{"output_type": "execute_result", "execution_count": 2, "metadata": {},
                  "data": {"text/plain": [f"'session={SESSION}; Path=/; HttpOnly'"]}}]},
], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}, indent=1)

# (kind as the issue names it, path, content, the secret)
CASES = [
    ("huggingface", "ml/hub.py", f'HF_TOKEN = "{HF}"\n\ndef login():\n    return HF_TOKEN\n', HF),
    ("digitalocean", "infra/digitalocean.sh", f"export DIGITALOCEAN_TOKEN={DIGITALOCEAN}\ndoctl compute droplet list\n",
     DIGITALOCEAN),
    ("shopify", "shop/client.rb", f"ACCESS_TOKEN = '{SHOPIFY}'\n\ndef client\n  Shop.new(ACCESS_TOKEN)\nend\n", SHOPIFY),
    ("vault", "ops/vault.sh", f"export VAULT_ADDR=https://vault.internal:8200\nexport VAULT_TOKEN={VAULT}\n", VAULT),
    ("azure-account-key", "app/Storage.cs",
     'var connection = "DefaultEndpointsProtocol=https;AccountName=prodstore;'
     f'AccountKey={AZURE};EndpointSuffix=core.windows.net";\n', AZURE),
    ("twilio", "notify/sms.js", f'const apiKey = "{TWILIO}";\nmodule.exports = {{ apiKey }};\n', TWILIO),
    ("authorization-basic", "api/client.py",
     f'import requests\n\nHEADERS = {{"Authorization": "Basic {BASIC}"}}\n', BASIC),
    ("authorization-bearer", "scripts/call.sh",
     f'curl -s -H "Authorization: Bearer {BEARER}" https://api.example.com/v1/orders\n', BEARER),
    ("secret-key-without-aws", "app/settings.py", f'DEBUG = False\nsecret_key = "{SECRET_KEY}"\n', SECRET_KEY),
    ("properties-password", "conf/app.properties",
     f"db.url=jdbc:postgresql://db:5432/app\ndb.user=app\ndb.password={PROPERTIES_PW}\n", PROPERTIES_PW),
    ("ini-password", "conf/service.ini", f"[database]\nhost = db\nuser = app\npassword = {INI_PW}\n", INI_PW),
    ("kubernetes-secret", "k8s/secret.yaml",
     "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\ntype: Opaque\ndata:\n"
     f"  username: {KUBE_USER}\n  password: {KUBE_PW}\nstringData:\n  config.yaml: |\n"
     f"    password: {KUBE_CONFIG_PW}\n", KUBE_PW),
    ("kubernetes-secret-block-scalar", "k8s/secret.yaml", None, KUBE_CONFIG_PW),
    ("docker-auths", "deploy/registry-auth.json",
     json.dumps({"auths": {"registry.example.com": {"auth": DOCKER_AUTH}}}, indent=2), DOCKER_AUTH),
    ("netrc-under-another-name", "ci/hosts-login",
     f"machine git.example.com\n  login ci-bot\n  password {NETRC_PW}\n", NETRC_PW),
    ("docker-login-p", "ci/publish.sh",
     f"docker login -u ci -p {DOCKER_LOGIN_PW} registry.example.com\ndocker push app\n", DOCKER_LOGIN_PW),
    ("mysql-p", "db/backup.sh", f"mysqldump -u root -p{MYSQL_PW} shop > /backup/shop.sql\n", MYSQL_PW),
    ("notebook-api-password", "notebooks/explore.ipynb", NOTEBOOK, NOTEBOOK_PW),
    ("notebook-session", "notebooks/explore.ipynb", None, SESSION),
]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    repo = tmp_path_factory.mktemp("leaky")
    for _, path, text, _ in CASES:
        if text is not None:
            (repo / path).parent.mkdir(parents=True, exist_ok=True)
            (repo / path).write_text(text)
    return chunk_repository(repo, parallel=False)


@pytest.mark.parametrize("kind, path, text, secret", CASES, ids=[c[0] for c in CASES])
def test_the_secret_reaches_no_chunk(table, kind, path, text, secret):
    assert secret not in "\n".join(table["text"])
    of_file = "\n".join(table.loc[table["path"] == path, "text"])
    assert "[REDACTED:" in of_file  # the file itself was indexed, with its secret replaced


GITHUB_IN_NAME = "gh" + "p_" + fake(ALNUM, 36)
HF_IN_NAME = "hf" + "_" + fake(LETTERS, 34)


def test_a_token_in_a_name_is_skipped_and_masked_in_every_example(tmp_path):
    from repo_index.core.source.discovery import discover

    files = {
        f"notes/{GITHUB_IN_NAME}.md": "# release notes\n",
        f"backup-{HF_IN_NAME}/model.py": "def load():\n    return None\n",
        f"logs/run-{GITHUB_IN_NAME}.log": "ok\n",  # gitignored: skipped for that, its example masked
        ".gitignore": "*.log\n",
        "src/app.py": "def main():\n    return 0\n",
    }
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)

    found = discover(tmp_path)
    assert [f.path for f in found.files] == [".gitignore", "src/app.py"]
    assert found.skipped["secret_in_name"] == 1 and found.pruned_dirs["secret_in_name"] == 1
    examples = repr((found.skipped_examples, found.pruned_examples))
    assert GITHUB_IN_NAME not in examples and HF_IN_NAME not in examples
    assert found.skipped_examples["secret_in_name"] == ["notes/[REDACTED:github-token].md"]
    assert found.skipped_examples["gitignored"] == ["logs/run-[REDACTED:github-token].log"]
    assert found.pruned_examples["secret_in_name"] == ["backup-[REDACTED:huggingface-access-token]"]

    table = chunk_repository(tmp_path, parallel=False)
    assert set(table["path"]) == {".gitignore", "src/app.py"}
