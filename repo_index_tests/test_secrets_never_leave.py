"""Secrets never leave the machine, end to end: a repository holding credentials (files that
usually hold them, and keys and tokens inside ordinary source) is indexed through Dagster
against the loopback OpenAI-compatible server; then the embedding requests, the Chroma
collection, the Dagster instance (event log, metadata, compute logs, stored outputs,
exceptions), the data folder and the console output are searched for every secret and
for the API key. A broken entry next to it fails only its own partition."""

from pathlib import Path

import chromadb
import dagster as dg
import pytest

from repo_index_tests.pipeline import (API_KEY, files_containing, materialize, project_env, register, stored_places,
                                      stored_texts)

pytestmark = pytest.mark.slow

AWS_KEY = "AKIAZ7QW3ERT5YUI2OPA"
GITHUB_TOKEN = "ghp_x7K2mQ9vL4pR8sT1wY6zB3nC5dF0gH2jK4lM"
STRIPE_KEY = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
DB_PASSWORD = "pg-pass-9f8e7d"
PEM_BODY = "MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM2Y1Tq0ZfA3e9kKz2oB7P6b9Lx0Q"
DEPLOY_KEY_BODY = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtz"
ENV_VALUE = "envfile-secret-value-123"
CREDENTIALS_VALUE = "credfile-secret-value-456"
NAME_TOKEN = "gh" + "p_" + "Nm7Tq2Lw9Xc4Vb8Zr1Ks6Dp3Fh5Gj0Ya2Ue4Io"  # a token in a file name
SECRETS = [AWS_KEY, GITHUB_TOKEN, STRIPE_KEY, DB_PASSWORD, PEM_BODY, DEPLOY_KEY_BODY, ENV_VALUE, CREDENTIALS_VALUE,
           NAME_TOKEN]

SETTINGS_PY = f'''"""Service settings (someone committed the credentials)."""
import os

AWS_ACCESS_KEY_ID = "{AWS_KEY}"
GITHUB_TOKEN = os.environ.get("GITHUB_TOKEN", "{GITHUB_TOKEN}")
STRIPE_API_KEY = "{STRIPE_KEY}"
DATABASE_URL = "postgres://service:{DB_PASSWORD}@db.internal:5432/orders"
TLS_KEY = """-----BEGIN RSA PRIVATE KEY-----
{PEM_BODY}
{PEM_BODY}
-----END RSA PRIVATE KEY-----"""


def database_settings():
    """Connection settings for the orders database."""
    return {{"url": DATABASE_URL, "pool_size": 5}}
'''

FILES = {
    "src/settings.py": SETTINGS_PY,
    "src/orders.py": "def place_order(cart):\n    \"\"\"Charge the cart and create an order.\"\"\"\n    return cart\n",
    "src/odd\nname.py": "def handle_newline_in_file_name():\n    return True\n",
    ".env": f"API_TOKEN={ENV_VALUE}\n",
    "deploy/id_ed25519": f"-----BEGIN OPENSSH PRIVATE KEY-----\n{DEPLOY_KEY_BODY}\n-----END OPENSSH PRIVATE KEY-----\n",
    "config/credentials.json": f'{{"token": "{CREDENTIALS_VALUE}"}}\n',
    f"notes/{NAME_TOKEN}.md": "# Deploy notes\n",
}


def test_no_secret_and_no_api_key_is_sent_stored_or_logged(tmp_path, openai_server):
    repo = tmp_path / "leaky"
    for rel, text in FILES.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    env = project_env(tmp_path, openai_server.base_url)
    home, data = Path(env["DAGSTER_HOME"]), Path(env["REPO_INDEX_DATA_DIR"])
    register(env, "leaky", repo)
    register(env, "broken", (tmp_path / "no-such-repository").as_uri())

    ok = materialize(env, "leaky")
    broken = materialize(env, "broken", check=False)

    # A failing clone fails its own partition, with a message naming the entry and the fix.
    assert broken.returncode != 0
    assert "repository 'broken' (source 'file://" in broken.stderr and "git clone failed" in broken.stderr
    assert "repo-index add broken SOURCE --replace" in broken.stderr

    # The secrets were there to leak: the files were seen and the key was used.
    assert openai_server.api_keys == {API_KEY}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        def metadata(asset: str) -> dict:
            event = instance.get_latest_materialization_event(dg.AssetKey(asset))
            return {k: v.value for k, v in event.asset_materialization.metadata.items()}

        assert metadata("repo_files")["skipped_by_reason"] == {"secret_looking": 3, "secret_in_name": 1}
        assert metadata("repo_files")["skipped_examples"]["secret_in_name"] == ["notes/[REDACTED:github-token].md"]
        chunks = metadata("code_chunks")
    assert chunks["secrets_redacted"] == {"aws-access-key": 1, "github-token": 1, "stripe-key": 1,
                                          "url-password": 1, "private-key": 1}
    assert chunks["files_with_secrets_redacted"] == 1 and chunks["secrets_redacted_examples"] == ["src/settings.py"]

    # Nothing reached the embedding API...
    sent = "\n".join(openai_server.embedded_texts)
    assert [s for s in SECRETS if s in sent] == []
    assert "[REDACTED:aws-access-key]" in sent and "place_order" in sent
    # ...nor the collection, where the redacted file is still searchable with right line numbers...
    coll = chromadb.PersistentClient(path=str(data / "chroma")).get_collection("repo_index-leaky")
    records = coll.get(include=["metadatas"])
    texts = stored_texts(coll)  # the lexical index beside it holds each record's text
    documents = [texts[cid] for cid in records["ids"]]
    assert [s for s in SECRETS if s in "\n".join(documents)] == []
    paths = {m["path"] for m in records["metadatas"]}
    assert paths == {"src/settings.py", "src/orders.py", "src/odd\nname.py"}  # a newline in a name survives
    places = stored_places(coll)
    settings = [(d, places[cid]) for d, cid in zip(documents, records["ids"]) if "database_settings" in d]
    doc, place = settings[0]
    line = place.start_line + doc.splitlines().index("def database_settings():")
    assert line == SETTINGS_PY.splitlines().index("def database_settings():") + 1
    # ...nor any file of the Dagster instance or the data folder (event log, metadata, compute
    # logs, stored outputs, the failed run's exception, the embedding cache, Chroma), nor the console.
    where = files_containing([API_KEY, *SECRETS], [home, data],
                             [ok.stdout, ok.stderr, broken.stdout, broken.stderr])
    assert where == []
    # A control: the same search does find the text those places store (the instance keeps
    # file paths; the data folder the code, in the chunk table and Chroma).
    assert files_containing(["src/orders.py"], [home]) and files_containing(["place_order"], [data])
