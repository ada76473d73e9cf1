"""Redact secrets from source text before it is chunked, embedded or stored.

Three passes, each seeing the text the one before left (a placeholder matches nothing):

1. This module's own patterns (`_TOKENS`), the first ones the project had: PEM private key
   blocks (also with escaped line breaks, as in service-account JSON, and without an END
   line), tokens with a provider's fixed prefix (AWS, GitHub, GitLab, Slack, OpenAI,
   Anthropic, Google, Stripe, npm, PyPI, SendGrid), JSON web tokens, an AWS secret key on a
   line that names it, and the password of a `scheme://user:password@host` URL.
2. The values of Kubernetes Secret manifests' data blocks (secret_rules/kubernetes.py).
3. The rule files of secret_rules/: gitleaks' maintained rules for some 200 providers'
   tokens (Hugging Face, DigitalOcean, Shopify, Vault, Twilio, ...) and ours for secrets
   known by their context (Authorization headers, config passwords, Docker and netrc
   credentials, passwords on command lines, notebooks). Generic "high entropy string"
   rules would redact hashes and test data by the thousand, so there is none.

Files that usually hold credentials (`.env`, keys, keystores) are not read at all:
see `discovery.SECRET_FILE_PATTERNS`. Each secret becomes `[REDACTED:kind]` followed by as
many newlines as it spanned, so line numbers of everything after it stay right.
"""

from __future__ import annotations

import re
from collections import Counter

import re2

from .secret_rules.engine import rule_set
from .secret_rules.kubernetes import KIND as KUBERNETES_KIND, redact_kubernetes_secrets

# A PEM private key: the BEGIN line, body lines (base64, RFC 1421 headers, blank), the END
# line. Line breaks may be real or escaped (`\n` in a JSON string, as in cloud
# service-account files). Without an END line, only the base64 lines that follow are taken,
# so code that merely names the markers keeps its text.
_EOL = r"(?:\n|\\n)[ \t]*"  # a real or escaped line break, then indentation
_LINE_END = r"[ \t]*(?=\n|\\n|[\"'`]|$)"
_BODY_LINE = r"(?:[A-Za-z0-9+/=]+|(?:Proc-Type|DEK-Info|Comment|Version):[^\n\\\"]*)?"
_MARK = r"[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
_PEM = (rf"-----BEGIN{_MARK}(?:(?:{_EOL}{_BODY_LINE}{_LINE_END})*{_EOL}-----END{_MARK}"
        rf"|(?:{_EOL}[A-Za-z0-9+/=]{{16,}}{_LINE_END})+)")

# (kind, needles, pattern): a pattern runs only on text containing one of its needles (one
# RE2 set of every needle finds them in a single pass, far cheaper than a regex scan that
# starts with `\b`); a pattern with a group named `s` redacts only that group.
_TOKENS: list[tuple[str, tuple[str, ...], re.Pattern]] = [
    (kind, needles, re.compile(pattern)) for kind, needles, pattern in [
        ("private-key", ("PRIVATE KEY",), _PEM),
        ("aws-access-key", ("AKIA", "ASIA", "ABIA", "ACCA"), r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b"),
        ("aws-secret-key", ("aws", "AWS", "Aws"),
         r"(?i:aws.{0,20}secret.{0,20}?)[\"'=:\s]+(?P<s>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"),
        ("github-token", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
         r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})\b"),
        ("gitlab-token", ("glpat-",), r"\bglpat-[A-Za-z0-9_-]{20,}"),
        ("slack-token", ("xox",), r"\bxox[baprs]-[A-Za-z0-9-]{10,}"),
        ("slack-webhook", ("hooks.slack.com",), r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]{20,}"),
        # Legacy and project keys carry "T3BlbkFJ" (base64 of "OpenAI"); scoped ones a prefix.
        ("openai-api-key", ("sk-",),
         r"\bsk-(?:[A-Za-z0-9_-]{0,80}T3BlbkFJ[A-Za-z0-9_-]{10,}|(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,})"),
        ("anthropic-api-key", ("sk-ant-",), r"\bsk-ant-[a-z]{3,6}\d{2}-[A-Za-z0-9_-]{80,}"),
        ("google-api-key", ("AIza",), r"\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])"),
        ("stripe-key", ("sk_live_", "sk_test_", "rk_live_", "rk_test_"), r"\b(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{24,}\b"),
        ("npm-token", ("npm_",), r"\bnpm_[A-Za-z0-9]{36}\b"),
        ("pypi-token", ("pypi-AgE",), r"\bpypi-AgE[A-Za-z0-9_-]{50,}"),
        ("sendgrid-key", ("SG.",), r"\bSG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}\b"),
        ("jwt", ("eyJ",), r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}"),
        # The password of user:password@host in a URL; the user and the host stay readable.
        # It starts with "://" so that the regex engine looks for that literal first.
        ("url-password", ("://",), r"://(?<=[a-z0-9+.-]://)[^\s/:@'\"]{0,64}:(?!\[REDACTED:)(?P<s>[^\s/@'\"]{3,128})@[\w.-]+"),
    ]
]
KINDS = tuple(kind for kind, _, _ in _TOKENS)
_NEEDLES = sorted({n for _, needles, _ in _TOKENS for n in needles})
_NEEDLE_SET = re2.Set.SearchSet()
for _needle in _NEEDLES:
    _NEEDLE_SET.Add(re2.escape(_needle))
_NEEDLE_SET.Compile()


def _placeholder(kind: str, secret: str) -> str:
    return f"[REDACTED:{kind}]" + "\n" * secret.count("\n")


def redact(text: str, path: str = "") -> tuple[str, Counter]:
    """`text` with every secret replaced, and how many of each kind. `path` (the file's,
    repository-relative) decides the rules that hold for some file types only."""
    try:
        return _redact(text, path)
    except UnicodeEncodeError:  # a lone surrogate (a non-UTF-8 file name): RE2 reads UTF-8
        return _redact(_encodable(text), _encodable(path))


def holds_secret(name: str) -> bool:
    return bool(redact(name)[1])


def mask(text: str) -> str:
    """`text` (a path, a message) with any secret in it replaced, for what is recorded
    about files in metadata; unchanged when it holds none."""
    masked, found = redact(text)
    return masked if found else text


def _encodable(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8")  # one "?" per surrogate


def _redact(text: str, path: str) -> tuple[str, Counter]:
    found: Counter = Counter()
    text = _redact_own_patterns(text, found)
    text, n = redact_kubernetes_secrets(text, f"[REDACTED:{KUBERNETES_KIND}]")
    if n:
        found[KUBERNETES_KIND] += n
    spans = rule_set().find(text, path)
    if spans:
        parts, done = [], 0
        for start, end, kind in spans:
            found[kind] += 1
            parts += [text[done:start], _placeholder(kind, text[start:end])]
            done = end
        text = "".join(parts) + text[done:]
    return text, found


def _redact_own_patterns(text: str, found: Counter) -> str:
    present = {_NEEDLES[i] for i in _NEEDLE_SET.Match(text) or ()}
    for kind, needles, pattern in _TOKENS:
        if present.isdisjoint(needles):
            continue

        def repl(m: re.Match, kind: str = kind) -> str:
            found[kind] += 1
            if "s" not in m.re.groupindex:
                return _placeholder(kind, m.group(0))
            a, b = m.start("s") - m.start(), m.end("s") - m.start()
            return m.group(0)[:a] + _placeholder(kind, m.group("s")) + m.group(0)[b:]

        text = pattern.sub(repl, text)
    return text
