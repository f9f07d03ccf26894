"""Ray's dashboard token file kept private: created 0600 by us when missing, chmod 0600 after Ray touched it.

Ray (2.5x) writes ~/.ray/auth_token with the process umask (0644: readable by every local user), and the token
is all a local user needs to run code on the cluster.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path


def token_path() -> Path:
    """Where Ray reads the token: $RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token."""
    env = os.environ.get("RAY_AUTH_TOKEN_PATH")
    return Path(env).expanduser() if env else Path.home() / ".ray" / "auth_token"


def ensure_private_token() -> Path | None:
    """Before a local ray.init with token auth: write a new token 0600 when none exists; returns its path if made."""
    if os.environ.get("RAY_AUTH_MODE", "token").lower() == "disabled" or os.environ.get("RAY_AUTH_TOKEN"):
        return None
    path = token_path()
    if path.exists():
        return None
    try:
        from ray._private.authentication.authentication_token_generator import generate_new_authentication_token
    except ImportError:  # another Ray version: let Ray create it, keep_token_private fixes the mode
        return None
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return None
    with os.fdopen(fd, "w") as f:
        f.write(generate_new_authentication_token())
    return path


def keep_token_private() -> None:
    """After ray.init: the token file (whoever created it) is readable by its owner only."""
    path = token_path()
    if path.is_file() and path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)


def dashboard_note() -> str:
    """How to log in to the dashboard, as commands that work from the README's set-up (no activated venv).

    `ray` lives beside this Python (.venv/bin), which is usually not on PATH: name it by its absolute path.
    """
    if os.environ.get("RAY_AUTH_MODE", "token").lower() == "disabled":
        return "token authentication DISABLED by RAY_AUTH_MODE=disabled"
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "token authentication on: paste the token in $RAY_AUTH_TOKEN"
    ray_cli = Path(sys.executable).parent / "ray"  # not resolved: a venv's python links out of the venv
    command = shlex.quote(str(ray_cli)) if ray_cli.exists() else "ray"
    path = shlex.quote(str(token_path()))
    return f"token authentication on: paste the token in {path} (`cat {path}` or `{command} get-auth-token`)"
