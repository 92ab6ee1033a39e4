"""`ssl-explorer app` answers only to this machine's names (DNS rebinding).

A page on another site whose name is re-pointed at 127.0.0.1 reaches the app with its own name in
the Host header (and an Origin of the same name, so a same-origin check passes): the app must
give it no session. The app's session is its WebSocket (/_stcore/stream); the test opens one as
that browser would, with a foreign Host and then with the app's own names.
"""

from __future__ import annotations

import base64
import os
import socket

from ssl_core.cli.app import allowed_hosts
from ssl_core.cli.parser import build_parser


def websocket_status(port: int, host: str) -> int:
    """The HTTP status of a WebSocket handshake on the app's stream with `host` as the Host and
    Origin headers: 101 is a session, anything else a refusal."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET /_stcore/stream HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\n"
               f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: streamlit\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request.encode())
        status_line = connection.makefile("rb").readline().decode()
    return int(status_line.split()[1])


def test_a_foreign_host_gets_no_session_and_the_apps_own_names_do(hostile_app):
    port, _ = hostile_app
    for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1.evil.example:{port}"):
        assert websocket_status(port, host) == 403, host
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}"):
        assert websocket_status(port, host) == 101, host


def test_the_allowed_names_follow_the_address_and_the_option():
    args = build_parser().parse_args(["app", "--address", "10.0.0.5", "--allowed-host", "lab.example"])
    assert allowed_hosts(args.address, args.allowed_host) == ["localhost", "127.0.0.1", "::1", "10.0.0.5",
                                                             "lab.example"]
    # On every interface the machine's own name joins; other names need --allowed-host.
    assert allowed_hosts("0.0.0.0") == ["localhost", "127.0.0.1", "::1", socket.gethostname().lower()]
