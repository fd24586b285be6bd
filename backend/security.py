"""Who may talk to the backend: a bearer token, a Host-header check, a loopback bind.

The token lives in `$XDG_CONFIG_HOME/thunder/token` (default `~/.config/thunder/token`),
created on first start with mode 0600; the Blender add-on reads the same file.
The Host check defeats DNS rebinding: a web page whose name was re-pointed at
127.0.0.1 still sends its own name as Host, and is refused.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import socket
import stat
from pathlib import Path

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


class SecurityError(RuntimeError):
    """A refused configuration (bad bind, unreadable token file)."""


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "thunder"


def token_path() -> Path:
    return config_dir() / "token"


def load_or_create_token(path: Path | None = None) -> str:
    """Read the token, creating it (0600, atomically) on first start.

    A token file readable by others is tightened to 0600 rather than trusted
    as is: another local user could have read it, but refusing to start would
    only push users to work around the check. A symbolic link is refused, not
    followed: chmod would change whatever file it points at. Every problem is a
    SecurityError with a one-line message.
    """
    path = Path(path) if path is not None else token_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise SecurityError(f"cannot create the token folder {path.parent}: {exc.strerror or exc}") from None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
    except FileExistsError:
        return _read_token(path)
    except OSError as exc:
        raise SecurityError(f"cannot create the token file {path}: {exc.strerror or exc}") from None
    # Hex, not urlsafe base64: one urlsafe token in 64 starts with "-", and
    # `thunder loadtest --token -Ab…` then reads as an option (CI stop 27).
    token = secrets.token_hex(32)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(token + "\n")
    return token


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _read_token(path: Path) -> str:
    try:
        info = path.lstat()
    except OSError as exc:
        raise SecurityError(f"cannot read the token file {path}: {exc.strerror or exc}") from None
    if stat.S_ISLNK(info.st_mode):
        raise SecurityError(
            f"token file {path} is a symbolic link; replace it with the file itself "
            "(the server will not follow or chmod a link)"
        )
    if not stat.S_ISREG(info.st_mode):
        raise SecurityError(f"token file {path} is not a regular file; remove it to regenerate the token")
    try:
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.chmod(path, 0o600)
        raw = path.read_bytes()
    except OSError as exc:
        raise SecurityError(f"cannot read the token file {path}: {exc.strerror or exc}") from None
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise SecurityError(f"token file {path} holds non-ASCII bytes; delete it to regenerate") from None
    if len(token) < 16 or not token.isprintable() or any(c.isspace() for c in token):
        raise SecurityError(
            f"token file {path} holds no usable token (16 or more printable characters, "
            "no spaces); delete it to regenerate"
        )
    return token


def bearer_ok(authorization: str | None, token: str) -> bool:
    """Constant-time check of an `Authorization: Bearer <token>` header."""
    if not authorization:
        return False
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), token.encode())


def origin_ok(origin: str, allowed: frozenset[str]) -> bool:
    """An `Origin` header is allowed only when listed (scheme://host[:port], case-insensitive).
    `null` (sandboxed frames, file: pages) is never allowed."""
    origin = origin.strip().lower().rstrip("/")
    return origin != "null" and origin in allowed


def normal_origins(origins) -> frozenset[str]:
    return frozenset(o.strip().lower().rstrip("/") for o in origins if o and o.strip())


def split_host(host_header: str) -> str:
    """The host name of a Host header, without port or IPv6 brackets, lower-case."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else ""
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def is_loopback(host: str) -> bool:
    """True for a bare loopback name or address (127.0.0.0/8, ::1)."""
    host = host.strip().strip("[]").lower().rstrip(".")
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def allowed_hosts(allow_remote: bool, extra: tuple[str, ...] = ()) -> frozenset[str]:
    """Host names accepted besides loopback and (with --allow-remote) IP literals."""
    names = {h.lower().rstrip(".") for h in extra if h}
    if allow_remote:
        names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
    return frozenset(names)


def host_ok(host_header: str | None, allow_remote: bool, extra: frozenset[str] = frozenset()) -> bool:
    """Accept loopback Hosts; with --allow-remote also IP literals and this machine's names.

    A DNS name that is not ours is refused even with --allow-remote: that is
    exactly what a rebinding page sends.
    """
    if not host_header:
        return False
    host = split_host(host_header)
    if not host:
        return False
    if is_loopback(host) or host in extra:
        return True
    return allow_remote and _is_ip(host)


def check_bind(host: str, allow_remote: bool) -> None:
    """Refuse a non-loopback bind address unless --allow-remote was given."""
    if allow_remote:
        return
    if is_loopback(host):
        return
    raise SecurityError(
        f"refusing to listen on {host!r}: not a loopback address. "
        "Pass --allow-remote to serve other machines (the token is still required)."
    )
