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


def test_new_tokens_can_be_passed_as_a_command_line_value(tmp_path):
    # A token is pasted after `--token`; one starting with "-" reads as an option
    # (urlsafe base64 did that once in 64 tokens and failed CI stop 27).
    tokens = [security.load_or_create_token(tmp_path / f"t{i}") for i in range(300)]
    assert len(set(tokens)) == 300
    assert all(t[0].isalnum() and t.isalnum() and len(t) >= 32 for t in tokens)


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


@pytest.mark.parametrize(
    "header,ok",
    [
        ("Bearer secret-token-123456", True),
        ("bearer secret-token-123456", True),
        ("Bearer  secret-token-123456 ", True),
        ("Bearer secret-token-12345", False),
        ("Basic secret-token-123456", False),
        ("secret-token-123456", False),
        ("", False),
        (None, False),
    ],
)
def test_bearer(header, ok):
    assert security.bearer_ok(header, "secret-token-123456") is ok


@pytest.mark.parametrize(
    "host,local,remote",
    [
        ("127.0.0.1:8765", True, True),
        ("localhost:8765", True, True),
        ("LOCALHOST", True, True),
        ("[::1]:8765", True, True),
        ("127.1.2.3", True, True),
        ("evil.example:8765", False, False),  # DNS rebinding: refused even with --allow-remote
        ("localhost.evil.example", False, False),
        ("192.168.1.20:8765", False, True),
        ("[fe80::1]:80", False, True),
        ("", False, False),
        (None, False, False),
        ("[::1", False, False),
    ],
)
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
    r = subprocess.run(
        [sys.executable, "-m", "backend.cli", "serve", "--host", "0.0.0.0", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert r.returncode != 0
    assert "--allow-remote" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "make,fragment",
    [
        (lambda p: p.write_bytes("tökén-0123456789abcdef".encode()), "non-ASCII"),
        (lambda p: p.write_bytes(b"\xff\xfe" * 20), "non-ASCII"),
        (lambda p: p.mkdir(), "not a regular file"),
        (lambda p: p.write_text("short one\n"), "no usable token"),
        (lambda p: p.write_text("a token with spaces in it\n"), "no usable token"),
    ],
)
def test_token_file_edge_cases_are_one_line_refusals(tmp_path, make, fragment):
    path = tmp_path / "thunder" / "token"
    path.parent.mkdir()
    make(path)
    with pytest.raises(security.SecurityError) as err:
        security.load_or_create_token(path)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_a_symlinked_token_file_is_neither_followed_nor_chmodded(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("x" * 40 + "\n")
    os.chmod(target, 0o644)
    path = tmp_path / "thunder" / "token"
    path.parent.mkdir()
    path.symlink_to(target)
    with pytest.raises(security.SecurityError, match="symbolic link"):
        security.load_or_create_token(path)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    dangling = tmp_path / "thunder2" / "token"
    dangling.parent.mkdir()
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(security.SecurityError, match="symbolic link"):
        security.load_or_create_token(dangling)
    assert not (tmp_path / "nowhere").exists()  # not created through the link either


def test_serve_reports_a_bad_token_file_in_one_line(tmp_path):
    (tmp_path / "thunder").mkdir()
    (tmp_path / "thunder" / "token").mkdir()
    r = subprocess.run(
        [sys.executable, "-m", "backend.cli", "serve", "--bundle", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path)},
    )
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("thunder serve: token file")


def test_origin_check():
    allowed = security.normal_origins(["http://localhost:3000/", " HTTPS://Tool.Example "])
    assert security.origin_ok("http://localhost:3000", allowed)
    assert security.origin_ok("https://tool.example", allowed)
    assert not security.origin_ok("http://localhost:3001", allowed)
    assert not security.origin_ok("null", allowed | {"null"})
    assert not security.origin_ok("http://evil.example", frozenset())
