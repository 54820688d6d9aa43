"""Running the API: who may reach it, the listening socket, uvicorn and Ctrl-C; a server in a thread for tests.

The socket is bound before the model loads, so a port in use is said in a second, not after the load; connections
made while the model loads wait in the socket's backlog and are answered once it is ready.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TextIO

import uvicorn

from assistant.core.errors import InputError
from assistant.server.app import create_app
from assistant.server.worker import ModelWorker, ServedModel

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_MAX_WAITING = 8


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach ``host`` (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def check_exposure(host: str, api_key: str | None) -> None:
    """Refuse to put the model on the network without a key: anyone who can reach the port could use it."""
    if not is_loopback(host) and not api_key:
        raise InputError(
            f"Refusing to serve on {host} without an API key: anyone who can reach this machine could use the "
            "model. Give --api-key-file FILE (or --api-key KEY), or keep the default --host 127.0.0.1."
        )


def read_api_key(key: str | None, key_file: str | None) -> str | None:
    """The key from ``--api-key`` or the first line of ``--api-key-file`` (which keeps it out of the process list)."""
    if key_file is not None:
        try:
            lines = Path(key_file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(f"Cannot read the API key file '{key_file}': {error}.") from None
        key = lines[0] if lines else ""
        if not key.strip():
            raise InputError(f"The API key file '{key_file}' is empty; put the key on its first line.")
    if key is not None and not key.strip():
        raise InputError("The API key is empty; give a key, or leave --api-key out on the loopback address.")
    return key.strip() if key is not None else None


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free port), or InputError with the reason."""
    if not 0 <= port <= 65535:
        raise InputError(f"--port must be between 0 and 65535, not {port}.")
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as error:
        raise InputError(f"Cannot serve on '{host}': {error.strerror}.") from None
    sock = socket.socket(family, kind, protocol)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as error:
        sock.close()
        raise InputError(
            f"Cannot listen on {host} port {port}: {error.strerror or error}. Choose another port with --port."
        ) from None
    return sock


def base_url(host: str, sock: socket.socket) -> str:
    """The API's base URL as clients write it (``http://127.0.0.1:8765/v1``)."""
    port = sock.getsockname()[1]
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    return f"http://{shown}:{port}/v1"


def continue_hint(url: str, model_id: str, keyed: bool) -> str:
    """The block to paste into Continue's config.yaml."""
    lines = [
        "For Continue, add to ~/.continue/config.yaml:",
        "  models:",
        "    - name: Penwright",
        "      provider: openai",
        f"      model: {model_id}",
        f"      apiBase: {url}",
    ]
    if keyed:
        lines.append("      apiKey: YOUR_KEY")
    lines.append("      roles: [chat, autocomplete]")
    return "\n".join(lines)


class _Server(uvicorn.Server):
    """uvicorn, plus: Ctrl-C cancels the running generation at once, so open streams do not hold the shutdown."""

    def __init__(self, config: uvicorn.Config, worker: ModelWorker) -> None:
        super().__init__(config)
        self._worker = worker

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._worker.cancel_all()
        super().handle_exit(sig, frame)


def _config(app: object, debug: bool = False) -> uvicorn.Config:
    # Every implementation named, none left to "auto": a frozen build then carries exactly these modules.
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        http="h11",
        loop="asyncio",
        ws="none",
        lifespan="off",
        log_level="info" if debug else "warning",
        access_log=debug,
        timeout_graceful_shutdown=10,
    )


def serve_forever(
    model: ServedModel,
    sock: socket.socket,
    host: str,
    api_key: str | None = None,
    cors_origins: Sequence[str] = (),
    max_waiting: int = DEFAULT_MAX_WAITING,
    out: TextIO | None = None,
    debug: bool = False,
) -> None:
    """Serve until Ctrl-C (or SIGTERM); prints the URL and a Continue config block once ready."""
    out = out or sys.stdout
    worker = ModelWorker(model, max_waiting)
    server = _Server(_config(create_app(worker, api_key, cors_origins), debug), worker)
    url = base_url(host, sock)
    out.write(f"Serving {model.id} at {url} (OpenAI-compatible API). Ctrl-C stops.\n")
    out.write(continue_hint(url, model.id, keyed=api_key is not None) + "\n")
    out.flush()
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # uvicorn raises the Ctrl-C it handled again once it has shut down cleanly
    finally:
        worker.close()
        sock.close()


@dataclass
class RunningServer:
    url: str
    """The base URL clients use, ending in /v1."""
    worker: ModelWorker

    @property
    def root(self) -> str:
        return self.url.removesuffix("/v1")


@contextmanager
def serve_in_thread(
    model: ServedModel,
    host: str = DEFAULT_HOST,
    port: int = 0,
    api_key: str | None = None,
    cors_origins: Sequence[str] = (),
    max_waiting: int = DEFAULT_MAX_WAITING,
) -> Iterator[RunningServer]:
    """The same server in a background thread of this process (tests, the bench); stopped on exit."""
    sock = bind(host, port)
    worker = ModelWorker(model, max_waiting)
    server = _Server(_config(create_app(worker, api_key, cors_origins)), worker)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="penwright-server-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            worker.close()
            sock.close()
            raise RuntimeError("The HTTP server did not start.")
        time.sleep(0.01)
    try:
        yield RunningServer(base_url(host, sock), worker)
    finally:
        worker.cancel_all()
        server.should_exit = True
        thread.join(30)
        worker.close()
        sock.close()
