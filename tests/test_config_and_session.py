"""Configuration files, environment overrides and the session factory."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from jobs.core.config import load_config, parse_config
from jobs.core.located_yaml import InputError, parse_located
from jobs.core.session import JavaMissingError, check_java, session_settings
from tests.conftest import REPO_ROOT


def config_from(text: str, name: str = "x") -> object:
    return parse_config(parse_located(text, f"conf/{name}.yaml"), name)


def test_local_conf_is_the_default() -> None:
    config = load_config(None, conf_dir=REPO_ROOT / "conf", environ={})
    assert config.name == "local"
    assert config.spark.master == "local[2]"
    assert config.warehouse == "./warehouse"
    assert config.delta_backend == "auto"


def test_settings_from_conf() -> None:
    config = load_config("test", conf_dir=REPO_ROOT / "conf", environ={})
    settings = session_settings(config)
    assert settings["spark.ui.enabled"] == "false"
    assert settings["spark.sql.shuffle.partitions"] == "2"
    assert settings["spark.sql.session.timeZone"] == "UTC"
    assert settings["spark.default.parallelism"] == "2"  # from `extra`


def test_remote_sessions_get_no_jvm_settings() -> None:
    config = parse_config(
        parse_located("spark: {remote: 'sc://h:15002', driver_memory: 4g}", "c.yaml"), "c"
    )
    settings = session_settings(config)
    assert "spark.driver.memory" not in settings and "spark.ui.enabled" not in settings


def test_environment_overrides() -> None:
    env = {"SAFETY_METRICS_WAREHOUSE": "/data/wh", "SAFETY_METRICS_MASTER": "spark://m:7077"}
    config = load_config("local", conf_dir=REPO_ROOT / "conf", environ=env)
    assert config.warehouse == "/data/wh"
    assert config.spark.master == "spark://m:7077"


def test_the_shared_session_follows_conf(spark: SparkSession) -> None:
    assert spark.conf.get("spark.sql.shuffle.partitions") == "2"
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert spark.conf.get("spark.ui.enabled") == "false"


def test_unknown_keys_are_located_with_a_suggestion() -> None:
    text = "spark:\n  master: local[2]\n  shufle_partitions: 4\nwarehose: ./w\n"
    with pytest.raises(InputError) as info:
        config_from(text)
    lines = [str(p) for p in info.value.problems]
    assert lines == [
        "conf/x.yaml:4:1: E002 unknown key 'warehose' in the top level; did you mean 'warehouse'?",
        "conf/x.yaml:3:3: E002 unknown key 'shufle_partitions' in spark; "
        "did you mean 'shuffle_partitions'?",
    ]


def test_wrong_types_and_values_are_all_reported() -> None:
    text = "spark:\n  shuffle_partitions: many\n  ui_enabled: 1\ndelta_backend: delta\n"
    with pytest.raises(InputError) as info:
        config_from(text)
    messages = [str(p) for p in info.value.problems]
    assert any("x.yaml:2:3: E003 'spark.shuffle_partitions' must be int" in m for m in messages)
    assert any("x.yaml:3:3: E003 'spark.ui_enabled' must be bool" in m for m in messages)
    assert any(
        "x.yaml:4:1: E005 unknown delta_backend 'delta'; use one of: auto, native, delta-rs" in m
        for m in messages
    )
    assert len(messages) == 3


def test_yaml_syntax_error_names_the_line() -> None:
    with pytest.raises(InputError, match=r"c.yaml:2:1: E001 invalid YAML: found character"):
        parse_located("spark:\n\tmaster: x\n", "c.yaml")


def test_missing_conf_file_lists_the_available_ones(tmp_path: Path) -> None:
    (tmp_path / "local.yaml").write_text("warehouse: w\n")
    with pytest.raises(FileNotFoundError, match="available: local"):
        load_config("prod", conf_dir=tmp_path, environ={})


def test_missing_java_gets_a_one_line_install_hint(tmp_path: Path) -> None:
    with pytest.raises(JavaMissingError) as info:
        check_java({"PATH": str(tmp_path)})
    message = str(info.value)
    assert "\n" not in message
    assert "apt-get install -y openjdk-17-jre-headless" in message
