"""python -m webui [--host 127.0.0.1] [--port 7860] [--share] [--auth user:password | --auth-file F]
                 [--runs-dir runs]

Binds to the loopback interface by default. Anything reachable from other machines (a non-loopback
--host, or --share's public link) is refused unless a login is set: the page starts processes, reads
files on the server and holds your data.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m webui", description="LoRA Tailor web UI")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link (needs --auth)")
    parser.add_argument("--auth", metavar="USER:PASSWORD", help="require this login")
    parser.add_argument("--auth-file", metavar="FILE", help="require a login from FILE: one user:password per line")
    parser.add_argument("--runs-dir", default="runs", help="where run folders live (default ./runs)")
    return parser.parse_args(argv)


def is_loopback(host: str) -> bool:
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def read_auth(auth: str | None, auth_file: str | None) -> list[tuple[str, str]]:
    """Logins from --auth and --auth-file; raises ValueError with a message on a malformed entry."""
    entries: list[tuple[str, str]] = []
    lines = [("--auth", auth)] if auth else []
    if auth_file:
        path = Path(auth_file)
        if not path.is_file():
            raise ValueError(f"--auth-file {auth_file}: file not found")
        lines += [
            (f"{auth_file} line {n}", line.strip())
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
            if line.strip() and not line.strip().startswith("#")
        ]
    for where, text in lines:
        user, sep, password = text.partition(":")
        if not sep or not user.strip() or not password:
            raise ValueError(f"{where}: expected user:password")
        entries.append((user.strip(), password))
    if auth_file and not entries:
        raise ValueError(f"--auth-file {auth_file}: no user:password line")
    return entries


def check_launch(host: str, share: bool, logins: list[tuple[str, str]]) -> str | None:
    """Why this launch would be unsafe, or None when it is fine."""
    if logins:
        return None
    if share:
        return (
            "Refusing --share without a login: a public link would let anyone start jobs and read "
            "files on this machine. Add --auth user:password (or --auth-file FILE)."
        )
    if not is_loopback(host):
        return (
            f"Refusing to bind {host} without a login: other machines on the network could start jobs "
            f"and read files on this machine. Add --auth user:password (or --auth-file FILE), or use "
            f"--host 127.0.0.1."
        )
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        logins = read_auth(args.auth, args.auth_file)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    problem = check_launch(args.host, args.share, logins)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    from webui.app import build_app, launch  # gradio is imported only once the arguments are sound

    demo, _ = build_app(args.runs_dir)
    launch(demo, host=args.host, port=args.port, share=args.share, auth=logins)
    return 0


if __name__ == "__main__":
    sys.exit(main())
