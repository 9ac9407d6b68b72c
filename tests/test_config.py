"""Settings precedence and precise errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.config import ConfigError, Settings, load_settings


def test_defaults_match_the_operator_contract() -> None:
    s = load_settings(environ={})
    assert s == Settings()
    assert (s.relay_listen, s.admin_listen) == ("127.0.0.1:8080", "127.0.0.1:8081")
    assert s.upstream_url == "https://api.openai.com/v1"
    assert s.max_body_bytes == 16 * 1024 * 1024 and s.shutdown_grace_seconds == 30
    assert s.effective_database_url == "sqlite:///.orca/orca.db"
    assert s.effective_signing_key_file == ".orca/signing/ed25519.pem"
    assert s.upstream_client == "lean"


def test_env_beats_toml_and_flags_beat_env(tmp_path: Path) -> None:
    toml = tmp_path / "orca.toml"
    toml.write_text(
        'relay_listen = "127.0.0.1:9000"\nworkers = 3\nconsole_origins = ["https://a"]\n'
        'upstream_url = "http://toml/v1"\n'
    )
    s = load_settings(
        str(toml),
        environ={"ORCA_WORKERS": "2", "ORCA_UVLOOP": "off", "ORCA_UPSTREAM_URL": "http://env/v1"},
        overrides={"upstream_url": "http://flag/v1", "admin_listen": None},
    )
    assert s.relay_listen == "127.0.0.1:9000"
    assert s.workers == 2 and s.uvloop is False
    assert s.console_origins == ("https://a",)
    assert s.upstream_url == "http://flag/v1"
    assert s.admin_listen == "127.0.0.1:8081"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"ORCA_WORKERS": "two"}, "ORCA_WORKERS: 'two' is not a valid int"),
        ({"ORCA_WORKERS": "0"}, "workers: 0 must be at least 1"),
        ({"ORCA_UVLOOP": "maybe"}, "ORCA_UVLOOP"),
        ({"ORCA_RELAY_LISTEN": "8080"}, "relay_listen: '8080' is not HOST:PORT"),
        ({"ORCA_UPSTREAM_URL": "ftp://x/v1"}, "upstream_url"),
        ({"ORCA_MAX_BODY_BYTES": "10"}, "max_body_bytes"),
        ({"ORCA_SHUTDOWN_GRACE_SECONDS": "-1"}, "shutdown_grace_seconds"),
        ({"ORCA_UPSTREAM_CLIENT": "httpx"}, "upstream_client: 'httpx' is not one of lean, aiohttp"),
        ({"ORCA_SCAN_CACHE_ENTRIES": "-1"}, "scan_cache_entries: -1 is below 0"),
    ],
)
def test_bad_values_name_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_settings(environ=environ)


def test_toml_errors_name_the_file_and_key(tmp_path: Path) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text('relay_lisen = "x"\n')
    with pytest.raises(ConfigError, match=r"bad.toml: unknown setting 'relay_lisen'"):
        load_settings(str(toml), environ={})
    toml.write_text("workers = [\n")
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        load_settings(str(toml), environ={})
    with pytest.raises(ConfigError, match=r"missing\.toml"):
        load_settings(str(tmp_path / "missing.toml"), environ={})
