"""The CLI's side of a running server: one search over HTTP, standard library only, so a
`repo-index search` through the server costs a process start and a request, not the
imports and the model the search itself needs."""

from __future__ import annotations

import json
import urllib.error
import urllib.request


class ServerError(RuntimeError):
    """The server answered with an error (its message), or could not be reached."""


def remote_search(url: str, timeout_s: float = 60.0, **params) -> dict:
    request = urllib.request.Request(url.rstrip("/") + "/search", data=json.dumps(params).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        try:
            message = json.load(exc)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {exc.code} {exc.reason}"
        raise ServerError(message) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ServerError(f"the search server at {url} cannot be reached ({reason}); start it with "
                          f"`repo-index serve`, or unset REPO_INDEX_SERVER_URL to search in this process") from None
