"""[bus]: many processes need PostgreSQL; a worker's name goes into NATS and lock names."""

from __future__ import annotations

import pytest

from veche.config import ConfigError, load_config

PG = "postgresql://veche@127.0.0.1/veche"


def test_a_bus_on_sqlite_is_refused_with_the_reason() -> None:
    with pytest.raises(ConfigError, match="needs a PostgreSQL database"):
        load_config(None, {"bus": {"url": "nats://127.0.0.1:4222"}}, environ={})


def test_without_a_bus_veche_is_one_process() -> None:
    assert not load_config(None, {"database": {"url": PG}}, environ={}).clustered


def test_a_bus_on_postgresql_from_the_environment() -> None:
    config = load_config(None, {"bus": {"worker_name": "w-1.a"}}, environ={
        "VECHE_DATABASE__URL": PG, "VECHE_BUS__URL": "nats://10.0.0.5:4222"})
    assert config.clustered and config.bus.worker_name == "w-1.a"


@pytest.mark.parametrize("bad", [{"url": "http://127.0.0.1:4222"},
                                 {"url": "nats://x:4222", "worker_name": "a b"},
                                 {"url": "nats://x:4222", "worker_name": "w/1"}])
def test_bad_bus_settings_are_refused(bad: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="bus"):
        load_config(None, {"bus": bad, "database": {"url": PG}}, environ={})
