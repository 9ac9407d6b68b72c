"""Settings: built once at startup from defaults < TOML file (--config) < ORCA_* environment.

The object is frozen and validated before any listener opens; nothing re-reads the
environment later. Each field's TOML key is its name; its variable is ORCA_<NAME>.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

MIB = 1024 * 1024
UPSTREAM_CLIENTS = ("lean", "aiohttp")


class ConfigError(ValueError):
    """A setting is missing, unknown or malformed; the message names the source and key."""


@dataclass(frozen=True)
class Settings:
    relay_listen: str = "127.0.0.1:8080"
    admin_listen: str = "127.0.0.1:8081"
    upstream_url: str = "https://api.openai.com/v1"
    upstream_api_key: str = ""
    data_dir: str = "./.orca"
    database_url: str = ""  # empty: sqlite:///<data_dir>/orca.db
    max_body_bytes: int = 16 * MIB
    shutdown_grace_seconds: float = 30.0
    signing_key_file: str = ""  # empty: <data_dir>/signing/ed25519.pem
    upstream_connect_timeout_seconds: float = 10.0
    # Longest wait for a non-streamed answer, and longest silence inside a stream.
    upstream_timeout_seconds: float = 600.0
    # The upstream HTTP client: "lean" (relay/proxy/http1.py) or "aiohttp" (ClientSession).
    upstream_client: str = "lean"
    workers: int = 1
    uvloop: bool = True
    console_origins: tuple[str, ...] = ()
    # Console sessions: absolute lifetime, and how long one may sit unused.
    session_ttl_seconds: float = 12 * 3600.0
    session_idle_seconds: float = 30 * 60.0
    # Texts whose findings each worker remembers (per relay key, by keyed digest only), so
    # a conversation's resent history is not scanned again; 0 turns this off.
    scan_cache_entries: int = 10_000
    # How often each process re-reads keys and shared usage from the store.
    state_refresh_seconds: float = 0.5
    log_level: str = "info"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return "sqlite:///" + str(Path(self.data_dir) / "orca.db")

    @property
    def effective_signing_key_file(self) -> str:
        return self.signing_key_file or str(Path(self.data_dir) / "signing" / "ed25519.pem")

    def with_changes(self, **changes: Any) -> Settings:
        new = dataclasses.replace(self, **changes)
        new.validate()
        return new

    def validate(self) -> None:
        for name in ("relay_listen", "admin_listen"):
            parse_listen(getattr(self, name), name)
        parts = urlsplit(self.upstream_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"upstream_url: {self.upstream_url!r} is not an http(s) URL "
                "(expected e.g. https://api.openai.com/v1)"
            )
        if self.upstream_client not in UPSTREAM_CLIENTS:
            raise ConfigError(
                f"upstream_client: {self.upstream_client!r} is not one of "
                + ", ".join(UPSTREAM_CLIENTS)
            )
        if self.max_body_bytes < 1024:
            raise ConfigError(f"max_body_bytes: {self.max_body_bytes} is below 1024")
        if self.scan_cache_entries < 0:
            raise ConfigError(f"scan_cache_entries: {self.scan_cache_entries} is below 0")
        if self.workers < 1:
            raise ConfigError(f"workers: {self.workers} must be at least 1")
        for name in (
            "shutdown_grace_seconds",
            "upstream_connect_timeout_seconds",
            "upstream_timeout_seconds",
            "state_refresh_seconds",
            "session_ttl_seconds",
            "session_idle_seconds",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be greater than 0")


def parse_listen(value: str, name: str = "listen") -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigError(f"{name}: {value!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def _coerce(name: str, raw: Any, source: str) -> Any:
    kind = _FIELDS[name].type
    try:
        if kind == "int":
            if isinstance(raw, bool):
                raise ValueError
            return int(raw)
        if kind == "float":
            if isinstance(raw, bool):
                raise ValueError
            return float(raw)
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind == "tuple[str, ...]":
            if isinstance(raw, str):
                return tuple(p.strip() for p in raw.split(",") if p.strip())
            if isinstance(raw, list) and all(isinstance(p, str) for p in raw):
                return tuple(raw)
            raise ValueError
        if not isinstance(raw, str):
            raise ValueError
        return raw
    except ValueError:
        raise ConfigError(f"{source}: {raw!r} is not a valid {kind} for {name}") from None


def load_settings(
    config_file: str | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Defaults < TOML < environment < explicit overrides (command-line flags)."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    if config_file:
        try:
            with open(config_file, "rb") as fh:
                table = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"--config {config_file}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"--config {config_file}: {exc}") from None
        for key, raw in table.items():
            if key not in _FIELDS:
                raise ConfigError(f"{config_file}: unknown setting {key!r}")
            values[key] = _coerce(key, raw, f"{config_file}: {key}")
    for name in _FIELDS:
        var = "ORCA_" + name.upper()
        if var in environ:
            values[name] = _coerce(name, environ[var], var)
    for name, raw in (overrides or {}).items():
        if raw is not None:
            values[name] = _coerce(name, raw, "--" + name.replace("_", "-"))
    settings = Settings(**values)
    settings.validate()
    return settings
