"""High-confidence secrets are redacted in place; look-alikes in ordinary code are not."""

import json

import pytest

from repo_index.core.source.secrets import KINDS, redact

PEM_LINE = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj"
PEM = f"-----BEGIN PRIVATE KEY-----\n{PEM_LINE}\n{PEM_LINE}\nMQ==\n-----END PRIVATE KEY-----"

# (kind, text holding a secret, the secret)
SECRETS = [
    ("private-key", f'KEY = """{PEM}"""\n', PEM_LINE),
    ("private-key", "-----BEGIN OPENSSH PRIVATE KEY-----\n" + f"{PEM_LINE}\n" * 2 + "(truncated)\n", PEM_LINE),
    ("aws-access-key", 'key_id = "AKIAZ7QW3ERT5YUI2OPA"\n', "AKIAZ7QW3ERT5YUI2OPA"),
    ("aws-access-key", "ASIAY34FZKBOKMUTVV7A,\n", "ASIAY34FZKBOKMUTVV7A"),
    ("aws-secret-key", "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
     "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("github-token", "token: ghp_x7K2mQ9vL4pR8sT1wY6zB3nC5dF0gH2jK4lM\n", "ghp_x7K2mQ9vL4pR8sT1wY6zB3nC5dF0gH2jK4lM"),
    ("github-token", "github_pat_11AAAAAAA0abcdefghijkl_mnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcd\n",
     "github_pat_11AAAAAAA0abcdefghijkl"),
    ("gitlab-token", "glpat-a1B2c3D4e5F6g7H8i9J0\n", "glpat-a1B2c3D4e5F6g7H8i9J0"),
    ("slack-token", 'SLACK = "xoxb-2039485732-2039485732-aB3dE5fG7hJ9kL1m"\n', "xoxb-2039485732"),
    ("slack-webhook", "url = 'https://hooks.slack.com/services/T0000000/B0000000/XXXXXXXXXXXXXXXXXXXXXXXX'\n",
     "hooks.slack.com/services/T0000000"),
    ("openai-api-key", "OPENAI = 'sk-abcdefghijklmnopqrstT3BlbkFJabcdefghijklmnopqrst'\n", "T3BlbkFJabcdefghij"),
    ("openai-api-key", "OPENAI = 'sk-proj-" + "Ab9_-" * 12 + "'\n", "sk-proj-Ab9_-Ab9_-"),
    ("anthropic-api-key", "k = 'sk-ant-api03-" + "x" * 93 + "AA'\n", "sk-ant-api03-xxxx"),
    ("google-api-key", "maps_key = 'AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q'\n", "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q"),
    ("stripe-key", 'stripe.api_key = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"\n', "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    ("npm-token", "//registry.npmjs.org/:_authToken=npm_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8\n", "npm_a1B2c3D4e5F6"),
    ("pypi-token", "password = pypi-AgEIcHlwaS5vcmcCJGE5ZjNiNmQ1LTFiMjMtNDc1Ni05ZDA4LWY4ZjEwNzE2ZTg4MQACKlszLCJ\n",
     "pypi-AgEIcHlwaS5vcmcCJGE5"),
    ("sendgrid-key", "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\n", "SG.ngeVfQFYQlKU0ufo8x5d1A"),
    ("jwt", "auth = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U'\n",
     "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"),
    ("url-password", 'DATABASE_URL = "postgres://app:s3cr3t-pw@db.internal:5432/app"\n', "s3cr3t-pw"),
]


@pytest.mark.parametrize("kind, text, secret", SECRETS, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(SECRETS)])
def test_each_kind_is_redacted_in_place_with_line_structure_kept(kind, text, secret):
    out, found = redact(text)
    assert secret not in out
    assert f"[REDACTED:{kind}]" in out
    assert dict(found) == {kind: 1}
    assert out.count("\n") == text.count("\n")  # line numbers after it stay right
    assert redact(out) == (out, {})  # placeholders are not secrets themselves


def test_every_kind_is_tested():
    assert {kind for kind, _, _ in SECRETS} == set(KINDS)


def test_only_the_secret_part_is_replaced():
    assert redact("url = 'postgres://app:s3cr3t-pw@db:5432/x'\n")[0] == "url = 'postgres://app:[REDACTED:url-password]@db:5432/x'\n"
    assert redact("aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n")[0] == \
        "aws_secret_access_key=[REDACTED:aws-secret-key]\n"


def test_a_key_inside_a_json_string_is_redacted_and_the_json_stays_valid():
    doc = json.dumps({"type": "service_account", "private_key": PEM + "\n", "client_email": "a@b.iam"})
    out, found = redact(doc)
    assert PEM_LINE not in out and found == {"private-key": 1}
    assert json.loads(out)["client_email"] == "a@b.iam"


def test_code_that_only_names_markers_and_prefixes_is_left_alone():
    code = '''BEGIN = "-----BEGIN RSA PRIVATE KEY-----"
END = "-----END RSA PRIVATE KEY-----"

def is_key(text):
    return text.startswith(BEGIN) and "AKIA" in text or text.startswith(("ghp_", "sk-", "xoxb-", "AIza"))

spinner = "sk-fading-circle-container"  # a CSS class, not a key
repo = "https://github.com/org/repo.git"
local = "http://localhost:8080/path"
digest = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
'''
    assert redact(code) == (code, {})


def test_several_secrets_are_all_counted():
    text = "a = 'AKIAZ7QW3ERT5YUI2OPA'\nb = 'AKIAQ7QW3ERT5YUI2OPB'\nc = 'ghp_x7K2mQ9vL4pR8sT1wY6zB3nC5dF0gH2jK4lM'\n"
    out, found = redact(text)
    assert found == {"aws-access-key": 2, "github-token": 1}
    assert out.splitlines() == ["a = '[REDACTED:aws-access-key]'", "b = '[REDACTED:aws-access-key]'",
                                "c = '[REDACTED:github-token]'"]
