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


# --- a bad setting names the fix (issue 15, item 8) ---


def test_an_unknown_scheme_lists_the_accepted_schemes() -> None:
    with pytest.raises(RedisConfigurationError) as bad:
        resolve_redis_settings("reddis://h:1/0", env={})
    text = str(bad.value)
    assert "'reddis://'" in text and "redis://, rediss://, unix:// or memory://<name>" in text
    assert "the redis= argument" in text


def test_memory_with_one_slash_suggests_the_memory_url() -> None:
    with pytest.raises(RedisConfigurationError, match="did you mean memory://oops"):
        resolve_redis_settings("memory:/oops", env={})


def test_host_and_port_without_a_scheme_suggests_a_redis_url() -> None:
    with pytest.raises(RedisConfigurationError, match=r"did you mean redis://localhost:6379\?"):
        resolve_redis_settings("localhost:6379", env={})


def test_a_port_that_is_not_a_number_is_a_configuration_error() -> None:
    with pytest.raises(RedisConfigurationError, match="invalid Redis URL 'redis://h:abc/0'"):
        RedisSettings(url="redis://h:abc/0")


def test_a_bad_url_from_the_environment_names_the_variable_not_the_password() -> None:
    with pytest.raises(RedisConfigurationError) as bad:
        RedisSettings.from_env({"MESH_REDIS_URL": "reddis://:hunter2@h:1/0"})
    text = str(bad.value)
    assert "(from MESH_REDIS_URL)" in text and "reddis://:***@h:1/0" in text
    assert "hunter2" not in text


def test_a_port_variable_that_is_not_a_number_is_named() -> None:
    with pytest.raises(RedisConfigurationError, match="REDIS_PORT='x' is not a number"):
        RedisSettings.from_env({"REDIS_HOST": "h", "REDIS_PORT": "x"})


def test_settings_from_the_environment_know_their_variable() -> None:
    assert RedisSettings.from_env({"REDIS_URL": "redis://x"}).source == "REDIS_URL"
    assert RedisSettings.from_env({"MESH_REDIS_HOST": "h"}).source == "MESH_REDIS_HOST"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://user:pw@h:1/0", "redis://user:***@h:1/0"),
        ("redis://:pw@h", "redis://:***@h"),
        ("rediss://h:1/0?password=pw&db=2", "rediss://h:1/0?password=***&db=2"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
    ],
)
def test_describe_masks_the_password(url: str, shown: str) -> None:
    assert RedisSettings(url=url).describe() == shown


def test_describe_names_the_engine() -> None:
    assert RedisSettings(url="memory://dev").describe() == "memory://dev (in-process)"
    sentinel = RedisSettings(sentinel_host="s", sentinel_port=1, sentinel_name="m", password="pw")
    assert sentinel.describe() == "Sentinel s:1, master 'm'"


def test_a_cluster_url_selects_a_cluster_with_its_seed_nodes() -> None:
    settings = resolve_redis_settings("redis+cluster://a:7000,b:7001", env={})
    assert settings.is_cluster
    assert settings.cluster_nodes() == [("a", 7000), ("b", 7001)]


def test_cluster_true_selects_a_cluster_at_host_and_port() -> None:
    settings = RedisSettings(host="h", port=7000, cluster=True)
    assert settings.is_cluster and settings.cluster_nodes() == [("h", 7000)]


def test_the_cluster_variable_selects_a_cluster_at_the_configured_url() -> None:
    env = {"MESH_REDIS_URL": "redis://h:7000/0", "MESH_REDIS_CLUSTER": "1"}
    settings = RedisSettings.from_env(env)
    assert settings.is_cluster and settings.cluster_nodes() == [("h", 7000)]


def test_a_plain_url_stays_a_single_instance() -> None:
    assert not resolve_redis_settings("redis://h:1/0", env={}).is_cluster


def test_a_cluster_url_without_nodes_is_refused() -> None:
    with pytest.raises(RedisConfigurationError, match="names no node"):
        resolve_redis_settings("redis+cluster://", env={})


def test_cluster_and_sentinel_are_refused_together() -> None:
    with pytest.raises(RedisConfigurationError, match="exclude each other"):
        RedisSettings(sentinel_host="s", cluster=True)
