"""The PostgreSQL database every worker of a cluster shares (REPO_INDEX_CACHE_URL), as
messages may show it: its URL holds a password. The embedding cache
(embed/cache/postgres_sql.py) and the request budget (embed/shared_budget.py) each connect
to it and say, when they cannot, what went wrong through `masked_error`."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit, urlunsplit

_KEY_VALUE_PASSWORD = re.compile(r"(password\s*=\s*)('([^']*)'|\S+)")


def masked_url(url: str) -> str:
    """`url` (or a libpq "key=value" string) with its password replaced, for messages."""
    if "://" not in url:
        return _KEY_VALUE_PASSWORD.sub(r"\1***", url)
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def _password(url: str) -> str | None:
    if "://" in url:
        return urlsplit(url).password
    found = _KEY_VALUE_PASSWORD.search(url)
    return (found.group(3) if found.group(3) is not None else found.group(2)) if found else None


def masked_error(exc: BaseException, url: str) -> str:
    """The driver's message on one line, with the URL and its password masked: it may quote
    the URL it could not use."""
    detail = " ".join(str(exc).split()).replace(url, masked_url(url))
    password = _password(url)
    for form in (password, unquote(password)) if password else ():  # as written, and as the driver reads it
        detail = detail.replace(form, "***")
    return detail
