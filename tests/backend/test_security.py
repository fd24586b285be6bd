"""Token file, bearer check, Host check, bind refusal (module level and through `thunder serve`)."""
from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from backend import security


def test_token_created_0600_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    token = security.load_or_create_token()
    path = tmp_path / "thunder" / "token"
    assert security.token_path() == path and path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(token) >= 32
    assert security.load_or_create_token() == token, "second start must reuse the token"


def test_loose_token_permissions_are_tightened(tmp_path):
    path = tmp_path / "token"
    path.write_text("x" * 40 + "\n")
    os.chmod(path, 0o644)
    assert security.load_or_create_token(path) == "x" * 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_unusable_token_file_is_refused(tmp_path):
    path = tmp_path / "token"
    path.write_text("short")
    with pytest.raises(security.SecurityError, match="delete it"):
        security.load_or_create_token(path)


@pytest.mark.parametrize("header,ok", [
    ("Bearer secret-token-123456", True), ("bearer secret-token-123456", True),
    ("Bearer  secret-token-123456 ", True), ("Bearer secret-token-12345", False),
    ("Basic secret-token-123456", False), ("secret-token-123456", False), ("", False), (None, False),
])
def test_bearer(header, ok):
    assert security.bearer_ok(header, "secret-token-123456") is ok


@pytest.mark.parametrize("host,local,remote", [
    ("127.0.0.1:8765", True, True), ("localhost:8765", True, True), ("LOCALHOST", True, True),
    ("[::1]:8765", True, True), ("127.1.2.3", True, True),
    ("evil.example:8765", False, False),          # DNS rebinding: refused even with --allow-remote
    ("localhost.evil.example", False, False),
    ("192.168.1.20:8765", False, True), ("[fe80::1]:80", False, True),
    ("", False, False), (None, False, False), ("[::1", False, False),
])
def test_host_check(host, local, remote):
    assert security.host_ok(host, allow_remote=False) is local
    assert security.host_ok(host, allow_remote=True) is remote


def test_extra_host_names():
    hosts = security.allowed_hosts(False, ("studio-render-01",))
    assert security.host_ok("studio-render-01:8765", False, hosts)
    assert not security.host_ok("studio-render-02:8765", False, hosts)


def test_bind_check():
    for host in ("127.0.0.1", "::1", "localhost"):
        security.check_bind(host, allow_remote=False)
    for host in ("0.0.0.0", "192.168.1.20", "::"):
        with pytest.raises(security.SecurityError, match="--allow-remote"):
            security.check_bind(host, allow_remote=False)
        security.check_bind(host, allow_remote=True)


def test_cli_refuses_public_bind_without_allow_remote(tmp_path):
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "backend.cli", "serve", "--host", "0.0.0.0", "--port", "1"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode != 0
    assert "--allow-remote" in r.stderr and "Traceback" not in r.stderr
