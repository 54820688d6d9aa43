"""API keys: the keyring where there is one, the session's memory where there is none, never the settings file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail

from assistant.core.api_keys import ENV_VARIABLE, NO_KEYRING, SERVICE, KeyStore
from assistant.core.settings import AppSettings, load_settings, save_settings

SERVER = "http://gpu-box:8000/v1"


class MemoryKeyring(KeyringBackend):
    """A keyring that works, in memory (the system's is never touched by tests)."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.items.pop((service, username), None)


class LockedKeyring(MemoryKeyring):
    def set_password(self, service: str, username: str, password: str) -> None:
        raise RuntimeError("locked")


@pytest.fixture(autouse=True)
def no_key_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VARIABLE, raising=False)


def test_a_key_goes_to_the_keyring_per_server() -> None:
    keyring = MemoryKeyring()
    store = KeyStore(keyring)
    assert store.keyring_available
    assert store.set(SERVER, " sk-1 ") == "The API key is kept in the system keyring."
    assert keyring.items == {(SERVICE, SERVER): "sk-1"}
    assert store.get(SERVER) == "sk-1" and store.stored(SERVER)
    assert KeyStore(keyring).get(SERVER) == "sk-1", "found again after a restart"
    assert store.get("http://other:1/v1") == ""
    assert store.set(SERVER, "") == "The API key was forgotten."
    assert keyring.items == {} and not store.stored(SERVER)


def test_without_a_keyring_the_key_lasts_the_session_and_that_is_said() -> None:
    store = KeyStore(None)
    assert not store.keyring_available
    assert store.set(SERVER, "sk-2") == NO_KEYRING
    assert "kept only until Penwright closes" in NO_KEYRING and ENV_VARIABLE in NO_KEYRING
    assert store.get(SERVER) == "sk-2"
    assert KeyStore(None).get(SERVER) == "", "another session does not have it"


def test_the_systems_fail_backend_counts_as_no_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    import keyring

    monkeypatch.setattr(keyring, "get_keyring", lambda: fail.Keyring())
    assert not KeyStore().keyring_available
    monkeypatch.setattr(keyring, "get_keyring", MemoryKeyring)
    assert KeyStore().keyring_available


def test_a_keyring_that_refuses_keeps_the_key_for_the_session() -> None:
    store = KeyStore(LockedKeyring())
    assert store.set(SERVER, "sk-3") == NO_KEYRING
    assert store.get(SERVER) == "sk-3"


def test_the_environment_variable_is_the_last_resort(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VARIABLE, "sk-env")
    store = KeyStore(MemoryKeyring())
    assert store.get(SERVER) == "sk-env"
    store.set(SERVER, "sk-kept")
    assert store.get(SERVER) == "sk-kept"


def test_the_settings_file_holds_the_server_but_never_a_key(tmp_path: Path) -> None:
    settings = AppSettings(backend="remote", remote_base_url=SERVER, remote_model="big", remote_timeout_s=30)
    path = tmp_path / "settings.json"
    save_settings(settings, path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert not any("key" in name for name in data)
    loaded = load_settings(path)
    assert (loaded.backend, loaded.remote_base_url, loaded.remote_model, loaded.remote_timeout_s) == (
        "remote",
        SERVER,
        "big",
        30,
    )
    assert AppSettings.from_dict({"backend": "cloud", "remote_timeout_s": 0}).backend == "local"
    assert AppSettings.from_dict({"remote_timeout_s": 0}).remote_timeout_s == 1
