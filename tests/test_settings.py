"""RedisSettings and environment resolution (API.md, Connection settings)."""

from __future__ import annotations

import pytest
from meshsrpc import RedisConfigurationError, RedisSettings
from meshsrpc.settings import resolve_redis_settings


def test_mesh_redis_url_wins_over_plain_redis_url() -> None:
    env = {"MESH_REDIS_URL": "redis://a:1/0", "REDIS_URL": "redis://b:2/0"}
    assert RedisSettings.from_env(env).url == "redis://a:1/0"


def test_host_and_port_variables() -> None:
    settings = RedisSettings.from_env({"MESH_REDIS_HOST": "h", "MESH_REDIS_PORT": "7000"})
    assert (settings.host, settings.port) == ("h", 7000)


def test_unscoped_variables_are_the_fallback() -> None:
    assert RedisSettings.from_env({"REDIS_HOST": "h2"}).host == "h2"


def test_sentinel_variables() -> None:
    env = {
        "MESH_REDIS_SENTINEL_HOST": "s",
        "MESH_REDIS_SENTINEL_PORT": "1",
        "MESH_REDIS_SENTINEL_NAME": "m",
    }
    settings = RedisSettings.from_env(env)
    assert (settings.sentinel_host, settings.sentinel_port, settings.sentinel_name) == ("s", 1, "m")


def test_prefix_from_mesh_then_redis_then_app() -> None:
    assert (
        RedisSettings.from_env(
            {"REDIS_URL": "redis://x", "MESH_REDIS_PREFIX": "m", "REDIS_PREFIX": "r"}
        ).key_prefix
        == "m"
    )
    assert RedisSettings.from_env({"REDIS_URL": "redis://x", "REDIS_PREFIX": "r"}).key_prefix == "r"
    assert RedisSettings.from_env({"REDIS_URL": "redis://x"}).key_prefix == "app"


def test_mutex_scope_reads_mutex_variables_first() -> None:
    env = {
        "MUTEX_REDIS_URL": "redis://mutex",
        "MESH_REDIS_URL": "redis://mesh",
        "MUTEX_REDIS_PREFIX": "mx",
    }
    settings = RedisSettings.from_env(env, scope="MUTEX")
    assert (settings.url, settings.key_prefix) == ("redis://mutex", "mx")


def test_nothing_configured_names_the_variables() -> None:
    with pytest.raises(RedisConfigurationError, match=r"MESH_REDIS_URL.*MESH_REDIS_HOST"):
        RedisSettings.from_env({})


def test_url_string_is_accepted_and_gets_the_env_prefix() -> None:
    settings = resolve_redis_settings("redis://x:1/0", env={"REDIS_PREFIX": "p"})
    assert (settings.url, settings.key_prefix) == ("redis://x:1/0", "p")


def test_memory_url_selects_the_in_process_engine() -> None:
    settings = resolve_redis_settings("memory://abc", env={})
    assert settings.is_memory and settings.memory_name == "abc"
