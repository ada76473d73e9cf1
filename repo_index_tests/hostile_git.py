"""Folders whose git config runs commands, and a real https server that asks for
credentials: what a caller's working directory or a registered folder may hold."""

from __future__ import annotations

import http.server
import shutil
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from repo_index_tests.gitutil import git, make_repo


def hostile_config(folder: Path, marker: Path, redirect: tuple[str, str] | None = None) -> None:
    """Config in `folder`'s repository that runs `touch marker` wherever git lets config run
    a command; `redirect` = (url, to): `url` is read as `to` (url.<to>.insteadOf)."""
    settings = [
        ("core.fsmonitor", f"touch {marker}"),
        ("core.sshCommand", f"touch {marker}; ssh"),
        ("credential.helper", f"!touch {marker}"),
        ("remote.origin.uploadpack", f"touch {marker}; git-upload-pack"),
        ("http.sslVerify", "false"),  # so a credential helper is reached on a self-signed https server
    ]
    if redirect:
        url, to = redirect
        settings += [(f"url.{to}.insteadOf", url),
                     # git looks up a remote named by the URL given, before and after rewriting
                     (f"remote.{url}.uploadpack", f"touch {marker}; git-upload-pack"),
                     (f"remote.{to}.uploadpack", f"touch {marker}; git-upload-pack")]
    for key, value in settings:
        git(folder, "config", key, value)


def untrusted_folder(path: Path, marker: Path, redirect: tuple[str, str] | None = None) -> Path:
    """A git work tree (someone else's download) with `hostile_config`."""
    make_repo(path, {"README.md": "nothing to see\n"})
    hostile_config(path, marker, redirect)
    return path


class AuthRequired(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="private"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class HttpsServer:
    """A private https git host on 127.0.0.1 with a self-signed certificate: every request
    answers 401, so git asks its credential helpers."""

    def __init__(self, folder: Path):
        if not shutil.which("openssl"):
            pytest.skip("openssl is needed to make a certificate")
        cert, key = folder / "cert.pem", folder / "key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), AuthRequired)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}/private.git"

    def __enter__(self) -> HttpsServer:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
