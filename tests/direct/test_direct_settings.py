"""DirectSettings from the environment."""

from __future__ import annotations

import ssl
from pathlib import Path

from meshsrpc import DirectSettings

from tests._tls import self_signed


def test_defaults_listen_on_loopback_with_any_free_port_and_no_secret() -> None:
    settings = DirectSettings.from_env({})
    assert (settings.host, settings.port, settings.secret, settings.enabled) == (
        "127.0.0.1",
        0,
        None,
        True,
    )
    assert settings.ssl is None and settings.client_ssl is None


def test_every_variable_is_read() -> None:
    settings = DirectSettings.from_env(
        {
            "MESH_DIRECT_SECRET": "s",
            "MESH_DIRECT_HOST": "0.0.0.0",
            "MESH_DIRECT_PORT": "7400",
            "MESH_DIRECT_ADVERTISE_HOST": "10.0.3.17",
            "MESH_DIRECT_ADVERTISE_PORT": "17400",
        }
    )
    assert settings.secret_bytes == b"s"
    assert (settings.host, settings.port) == ("0.0.0.0", 7400)
    assert (settings.advertise_host, settings.advertise_port) == ("10.0.3.17", 17400)


def test_an_empty_secret_is_no_secret() -> None:
    assert DirectSettings.from_env({"MESH_DIRECT_SECRET": ""}).secret_bytes == b""


def test_mesh_direct_off_disables() -> None:
    for value in ("0", "off", "false", "no", "OFF"):
        assert not DirectSettings.from_env({"MESH_DIRECT": value}).enabled


def test_tls_files_give_mutual_tls_contexts(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    settings = DirectSettings.from_env(
        {
            "MESH_DIRECT_TLS_CERT": str(cert),
            "MESH_DIRECT_TLS_KEY": str(key),
            "MESH_DIRECT_TLS_CA": str(cert),
        }
    )
    assert settings.ssl is not None and settings.ssl.verify_mode == ssl.CERT_REQUIRED
    assert settings.client_ssl is not None
    assert settings.client_ssl.verify_mode == ssl.CERT_REQUIRED
