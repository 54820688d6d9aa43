"""API keys for remote servers: in the system keyring where there is one, never in the settings file or a log.

A key is stored per server (its base URL) under the service name ``penwright``. Where no keyring backend exists
(a headless Linux without a Secret Service, a locked or broken keyring), a key is kept in this process's memory
only, for the session, and :meth:`KeyStore.set` says so; ``PENWRIGHT_API_KEY`` in the environment is the way to
give a key that lasts without a keyring. ``keyring`` is imported only when a key is needed.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any

log = logging.getLogger(__name__)

SERVICE = "penwright"
ENV_VARIABLE = "PENWRIGHT_API_KEY"
NO_KEYRING = (
    "No system keyring was found, so the API key is kept only until Penwright closes. To keep it, install a "
    f"keyring (such as GNOME Keyring or KWallet) or set {ENV_VARIABLE} in the environment."
)


class KeyStore:
    """Keys by server URL: the system keyring when it works, this process's memory otherwise.

    ``backend`` replaces the system keyring (tests pass an in-memory one, or None for "no keyring").
    """

    _UNSET: Any = object()

    def __init__(self, backend: Any = _UNSET) -> None:
        self._backend = backend
        self._memory: dict[str, str] = {}

    def _keyring(self) -> Any:
        """The keyring backend to use, or None when there is no usable one."""
        if self._backend is not KeyStore._UNSET:
            return self._backend
        try:
            import keyring
            from keyring.backends import chainer, fail
        except ImportError:
            return None
        try:
            backend = keyring.get_keyring()
        except Exception:  # a broken keyring configuration: say "no keyring", do not crash the app
            return None
        if isinstance(backend, fail.Keyring) or getattr(backend, "priority", 1) <= 0:
            return None
        if isinstance(backend, chainer.ChainerBackend) and not backend.backends:
            return None
        return backend

    @property
    def keyring_available(self) -> bool:
        return self._keyring() is not None

    def get(self, server: str) -> str:
        """The key for ``server``: this session's, else the keyring's, else ``PENWRIGHT_API_KEY``, else ""."""
        if server in self._memory:
            return self._memory[server]
        backend = self._keyring()
        if backend is not None:
            try:
                stored = backend.get_password(SERVICE, server)
            except Exception as error:  # a locked or failing keyring
                log.warning("The system keyring could not be read: %s", type(error).__name__)
                stored = None
            if stored:
                return str(stored)
        return os.environ.get(ENV_VARIABLE, "").strip()

    def stored(self, server: str) -> bool:
        """Whether a key for ``server`` is kept (keyring or session), not counting the environment."""
        if server in self._memory:
            return True
        backend = self._keyring()
        if backend is None:
            return False
        try:
            return bool(backend.get_password(SERVICE, server))
        except Exception:
            return False

    def set(self, server: str, key: str) -> str:
        """Keep ``key`` for ``server`` ("" forgets it); returns a sentence saying where it is kept."""
        key = key.strip()
        backend = self._keyring()
        if not key:
            self._memory.pop(server, None)
            if backend is not None:
                with contextlib.suppress(Exception):  # nothing stored, or the keyring refuses: nothing to forget
                    backend.delete_password(SERVICE, server)
            return "The API key was forgotten."
        if backend is not None:
            try:
                backend.set_password(SERVICE, server, key)
            except Exception as error:
                log.warning("The system keyring could not store the API key: %s", type(error).__name__)
            else:
                self._memory.pop(server, None)
                return "The API key is kept in the system keyring."
        self._memory[server] = key
        return NO_KEYRING


_DEFAULT: KeyStore | None = None


def default_key_store() -> KeyStore:
    """The app's key store: one per process, so a key kept for the session is found again by every part of it."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = KeyStore()
    return _DEFAULT
