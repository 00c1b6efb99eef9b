"""TCP steps: send a line, read the reply line."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

from faultbox.errors import SpecFailure


class TcpClient:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port

    def call(self, method: str, args: Mapping[str, Any]) -> str:
        data: str = args["data"]
        timeout: float = args.get("timeout", 10.0)
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout) as sock:
                sock.sendall(data.encode() + (b"" if data.endswith("\n") else b"\n"))
                reply = b""
                while not reply.endswith(b"\n"):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    reply += chunk
        except OSError as exc:
            raise SpecFailure(f"tcp send to {self.host}:{self.port} failed: {exc.strerror or exc}") from None
        if not reply:
            raise SpecFailure(f"tcp send to {self.host}:{self.port}: the connection closed without a reply")
        return reply.decode("utf-8", "replace").strip()

    def close(self) -> None:
        pass
