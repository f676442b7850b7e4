"""Configuration loading: TOML + SIMWATCH_ env, exact error messages, secrets, check-config."""

from __future__ import annotations

import os
import re
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel
from pydantic_settings import BaseSettings

from simwatch.shell.settings import (
    ConfigError,
    EngineSettings,
    HttpSettings,
    HttpSourceSettings,
    MqttSourceSettings,
    Settings,
    check_config_main,
    config_windows,
    load_settings,
)

SHIPPED = Path(__file__).resolve().parent.parent / "config" / "simwatch.toml"
MQTT = "[[sources.mqtt]]\nname = 'broker-a'\ntopics = ['sims/#']\n"
HTTP_SRC = "[[sources.http]]\nname = 'emnify'\nadapter = 'emnify'\nbase_url = 'https://x.test'\n"
SECRET = "hunter2-very-secret"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "simwatch.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text.replace("{tmp}", str(tmp_path))), env or {})
    return str(info.value)


BAD_CONFIGS: list[tuple[str, str, dict[str, str], str]] = [
    (
        "port above range",
        "[http]\nport = 70000\n",
        {},
        "http.port: Input should be less than or equal to 65535 (got 70000)",
    ),
    (
        "port of wrong type",
        "[http]\nport = 'eighty'\n",
        {},
        (
            "http.port: Input should be a valid integer, unable to parse string as an integer "
            "(got 'eighty')"
        ),
    ),
    (
        "float not positive",
        "[engine]\neval_interval_s = 0\n",
        {},
        "engine.eval_interval_s: Input should be greater than 0 (got 0)",
    ),
    (
        "share above one",
        "[engine]\nhold_while_failing = 1.5\n",
        {},
        "engine.hold_while_failing: Input should be less than or equal to 1 (got 1.5)",
    ),
    (
        "literal choice",
        "[http]\nauth = 'maybe'\n",
        {},
        "http.auth: Input should be 'on' or 'off' (got 'maybe')",
    ),
    (
        "bool type",
        MQTT + "tls = 'yes please'\n",
        {},
        (
            "sources.mqtt[0].tls: Input should be a valid boolean, unable to interpret input "
            "(got 'yes please')"
        ),
    ),
    (
        "unknown top-level key",
        "stat_dir = 'x'\n",
        {},
        "stat_dir: unknown option (did you mean 'state_dir'?)",
    ),
    (
        "unknown section key, with a suggestion",
        "[engine]\ndimz = ['apn']\n",
        {},
        "engine.dimz: unknown option (did you mean 'dims'?)",
    ),
    (
        "unknown key in a list item",
        MQTT + "topic = 'x'\n",
        {},
        "sources.mqtt[0].topic: unknown option (did you mean 'topics'?)",
    ),
    ("unknown section", "[sources.kafka]\nx = 1\n", {}, "sources.kafka: unknown option"),
    (
        "missing required field",
        "[[sources.mqtt]]\nname = 'a'\n",
        {},
        "sources.mqtt[0].topics: Field required",
    ),
    (
        "two missing fields, one message",
        "[[sources.http]]\nname = 'a'\n",
        {},
        "sources.http[0].adapter: Field required; sources.http[0].base_url: Field required",
    ),
    (
        "empty topic list",
        "[[sources.mqtt]]\nname = 'a'\ntopics = []\n",
        {},
        "sources.mqtt[0].topics: List should have at least 1 item after validation, not 0 (got [])",
    ),
    (
        "duplicate source names across kinds",
        "[[sources.file]]\nname = 'a'\npath = 'x'\n" + MQTT.replace("broker-a", "a"),
        {},
        "sources.mqtt[0].name: duplicate source name 'a' (also sources.file[0])",
    ),
    (
        "reconnect bounds",
        MQTT + "reconnect_min_s = 40\n",
        {},
        "sources.mqtt[0].reconnect_min_s: must not exceed reconnect_max_s (got 40 > 30)",
    ),
    (
        "duplicate dimension",
        "[engine]\ndims = ['apn', 'country', 'apn']\n",
        {},
        "engine.dims: duplicate dimension 'apn' (got ['apn', 'country', 'apn'])",
    ),
    (
        "empty dims",
        "[engine]\ndims = []\n",
        {},
        "engine.dims: List should have at least 1 item after validation, not 0 (got [])",
    ),
    (
        "bad base_url",
        HTTP_SRC.replace("https://x.test", "ftp://x.test"),
        {},
        (
            "sources.http[0].base_url: must start with http:// or https:// and a host "
            "(got 'ftp://x.test')"
        ),
    ),
    (
        "password and password_file",
        MQTT + f"password = '{SECRET}'\npassword_file = '{{tmp}}/pw'\n",
        {},
        "sources.mqtt[0].password_file: give either password or password_file, not both",
    ),
    (
        "missing secret file",
        MQTT + "password_file = '{tmp}/nope'\n",
        {},
        "sources.mqtt[0].password_file: cannot read {tmp}/nope: No such file or directory",
    ),
    (
        "secret file is a folder",
        HTTP_SRC + "token_file = '{tmp}'\n",
        {},
        "sources.http[0].token_file: cannot read {tmp}: Is a directory",
    ),
    (
        "tls file missing",
        MQTT + "tls = true\nca_file = '{tmp}/ca.pem'\n",
        {},
        "sources.mqtt[0].ca_file: no such file: {tmp}/ca.pem",
    ),
    (
        "tls files without tls",
        MQTT + "ca_file = '{tmp}/ca.pem'\n",
        {},
        "sources.mqtt[0].ca_file: given but tls is false (set tls = true)",
    ),
    (
        "client cert without key",
        MQTT + "tls = true\ncert_file = '{tmp}/c.pem'\n",
        {},
        "sources.mqtt[0].key_file: required when cert_file is given",
    ),
    (
        "auth off only on loopback",
        "[http]\nhost = '0.0.0.0'\nauth = 'off'\n",
        {},
        (
            "http: auth: 'off' is only allowed on a loopback host, not '0.0.0.0': per-SIM "
            "data must not be open to the network (leave auth on; the token is generated "
            "in <state_dir>/api-token unless tokens_file is set)"
        ),
    ),
    (
        "inventory file missing",
        "[engine]\ninventory_file = '{tmp}/inv.csv'\n",
        {},
        "engine.inventory_file: no such file: {tmp}/inv.csv",
    ),
    (
        "section of wrong type",
        "engine = 3\n",
        {},
        "engine: Input should be a valid dictionary or instance of EngineSettings (got 3)",
    ),
    (
        "bad env value names the variable",
        "",
        {"SIMWATCH_HTTP__PORT": "abc"},
        (
            "http.port (from SIMWATCH_HTTP__PORT): Input should be a valid integer, unable to "
            "parse string as an integer (got 'abc')"
        ),
    ),
    (
        "unknown env option",
        "",
        {"SIMWATCH_HTTP__PROT": "1"},
        "http.prot (from SIMWATCH_HTTP__PROT): unknown option (did you mean 'port'?)",
    ),
    (
        "env list not JSON",
        "",
        {"SIMWATCH_ENGINE__DIMS": "apn,country"},
        (
            "engine.dims (from SIMWATCH_ENGINE__DIMS): not valid JSON: Expecting value: "
            "line 1 column 1 (char 0)"
        ),
    ),
    (
        "error inside a whole-list env value",
        "",
        {"SIMWATCH_SOURCES__MQTT": '[{"name": "a", "topics": ["t"], "qos": 7}]'},
        "sources.mqtt[0].qos (from SIMWATCH_SOURCES__MQTT): Input should be 0, 1 or 2 (got 7)",
    ),
    (
        "env item override beyond the file's list",
        MQTT,
        {"SIMWATCH_SOURCES__MQTT__1__PORT": "1884"},
        (
            "sources.mqtt[1] (from SIMWATCH_SOURCES__MQTT__1__PORT): no such item to override; "
            "set the whole list as JSON in SIMWATCH_SOURCES__MQTT"
        ),
    ),
    (
        "unknown top-level env option",
        "",
        {"SIMWATCH_STAT_DIR": "x"},
        "stat_dir (from SIMWATCH_STAT_DIR): unknown option (did you mean 'state_dir'?)",
    ),
    (
        "unknown env option in a file list item",
        MQTT,
        {"SIMWATCH_SOURCES__MQTT__0__TOPIC": "x"},
        (
            "sources.mqtt[0].topic (from SIMWATCH_SOURCES__MQTT__0__TOPIC): unknown option "
            "(did you mean 'topics'?)"
        ),
    ),
    (
        "env name with an empty part",
        "",
        {"SIMWATCH_HTTP____PORT": "1"},
        "SIMWATCH_HTTP____PORT: bad variable name (empty part between '__')",
    ),
    (
        "env list of values set by index",
        "",
        {"SIMWATCH_ENGINE__DIMS__0": "apn"},
        (
            "engine.dims (from SIMWATCH_ENGINE__DIMS__0): a list: set the whole list as JSON "
            "in SIMWATCH_ENGINE__DIMS"
        ),
    ),
    (
        "env section not JSON",
        "",
        {"SIMWATCH_SINKS__MQTT": "on"},
        (
            "sinks.mqtt (from SIMWATCH_SINKS__MQTT): not valid JSON: Expecting value: "
            "line 1 column 1 (char 0)"
        ),
    ),
    (
        "env item override beyond the environment's own list",
        MQTT,
        {
            "SIMWATCH_SOURCES__MQTT": "[]",
            "SIMWATCH_SOURCES__MQTT__0__PORT": "1884",
        },
        (
            "sources.mqtt[0] (from SIMWATCH_SOURCES__MQTT__0__PORT): no such item to override; "
            "set the whole list as JSON in SIMWATCH_SOURCES__MQTT"
        ),
    ),
    (
        "several problems in one message",
        "state_dir = 3\n[log]\nlevel = 'loud'\n",
        {},
        (
            "log.level: Input should be 'debug', 'info', 'warning' or 'error' (got 'loud'); "
            "state_dir: Input is not a valid path (got 3)"
        ),
    ),
]


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [case[1:] for case in BAD_CONFIGS],
    ids=[case[0] for case in BAD_CONFIGS],
)
def test_bad_config_message(tmp_path: Path, text: str, env: dict[str, str], expected: str) -> None:
    assert load_error(tmp_path, text, env) == expected.replace("{tmp}", str(tmp_path))


def test_bad_toml_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "[http]\nport = 1\nhost = \n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, {})
    assert str(info.value) == f"{path}: invalid TOML: Invalid value (at line 3, column 8)"


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path / "absent.toml", {})
    assert (
        str(info.value)
        == f"cannot read config file {tmp_path}/absent.toml: No such file or directory"
    )


def test_no_file_gives_defaults() -> None:
    settings = load_settings(None, {})
    assert settings == Settings()
    assert settings.http.port == 39153
    assert settings.engine.dims == ["apn", "country", "partner"]
    assert not settings.sources.any()


def test_shipped_config_loads_and_equals_defaults() -> None:
    assert load_settings(SHIPPED, {}) == load_settings(None, {})


def test_shipped_config_mentions_every_option() -> None:
    text = SHIPPED.read_text(encoding="utf-8")
    models = _models_under(Settings)
    assert len(models) >= 12
    missing = [
        f"{model.__name__}.{name}"
        for model in models
        for name, info in model.model_fields.items()
        if f"{name} = " not in text and not _is_section(info.annotation)
    ]
    assert missing == []


def _is_section(annotation: object) -> bool:
    """A field that is a sub-model or a list of sub-models (a TOML table, not a key)."""
    args = typing.get_args(annotation) or (annotation,)
    return any(isinstance(a, type) and issubclass(a, BaseModel) for a in args) or any(
        _is_section(a) for a in typing.get_args(annotation)
    )


def _models_under(model: type[BaseModel]) -> list[type[BaseModel]]:
    """Every settings model reachable from ``model`` (sections, list items, optionals)."""
    found: list[type[BaseModel]] = [model]

    def visit(annotation: object) -> None:
        if (
            isinstance(annotation, type)
            and issubclass(annotation, BaseModel)
            and annotation not in found
        ):
            found.append(annotation)
            for info in annotation.model_fields.values():
                visit(info.annotation)
        for arg in typing.get_args(annotation):
            visit(arg)

    for info in model.model_fields.values():
        visit(info.annotation)
    return found


def test_shipped_config_examples_are_valid(tmp_path: Path) -> None:
    """Uncommenting every example source gives a valid config (modulo secret files)."""
    text = SHIPPED.read_text(encoding="utf-8")
    examples = text[text.index("# --- Sources") : text.index("# --- Metrics")].splitlines()
    files = ("password_file", "token_file", "ca_file", "cert_file", "key_file", "tls")
    lines = [
        line.removeprefix("# ")
        for line in examples
        if re.match(r"# (\[\[sources\.\w+\]\]|\w+ = )", line)
        and not line.removeprefix("# ").startswith(files)
    ]
    assert len(lines) > 40  # every example option, not just the headers
    settings = load_settings(write(tmp_path, "\n".join(lines) + "\n"), {})
    assert [s.name for s in settings.sources.http] == ["emnify", "1nce", "jasper", "gateway"]
    assert [s.adapter for s in settings.sources.http] == ["emnify", "1nce", "cisco", "generic"]
    assert settings.sources.mqtt[0].topics == ["sims/+/records"]
    assert settings.sources.file[0].path == Path("/var/spool/simwatch")
    assert settings.sources.simulator[0].name == "simulator"


def test_shipped_config_sink_examples_are_valid(tmp_path: Path) -> None:
    """Uncommenting every sink example gives a valid config (modulo secret files)."""
    text = SHIPPED.read_text(encoding="utf-8")
    examples = text[text.index("# --- Sinks") :].splitlines()
    files = ("password_file", "token_file", "ca_file", "cert_file", "key_file", "tls")
    lines = [
        line.removeprefix("# ")
        for line in examples
        if re.match(r"# (\[sinks\.\w+\]|\w+ = )", line)
        and not line.removeprefix("# ").startswith(files)
    ]
    assert len(lines) > 30
    settings = load_settings(write(tmp_path, "\n".join(lines) + "\n"), {})
    sinks = settings.sinks
    assert sinks.alertmanager is not None
    assert sinks.alertmanager.urls == ["http://127.0.0.1:9093"]
    assert sinks.alertmanager.labels == {"env": "prod"}
    assert sinks.influxdb is not None
    assert sinks.influxdb.bucket == "simwatch"
    assert sinks.mqtt is not None
    assert sinks.mqtt.resolved_password() is None


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            "[sinks.alertmanager]\nurls = []\n",
            "sinks.alertmanager.urls: List should have at least 1 item after validation",
        ),
        (
            "[sinks.alertmanager]\nurls = ['127.0.0.1:9093']\n",
            "sinks.alertmanager.urls[0]: must start with http:// or https:// and a host",
        ),
        (
            (
                "[sinks.alertmanager]\nurls = ['http://a']\nresend_interval_s = 60\n"
                "ends_at_after_s = 30\n"
            ),
            "sinks.alertmanager.ends_at_after_s: must exceed resend_interval_s",
        ),
        ("[sinks.influxdb]\norg = 'x'\n", "sinks.influxdb.url: Field required"),
        (
            "[sinks.influxdb]\nurl = 'http://a'\ntoken = 'x'\ntoken_file = '/x'\n",
            "sinks.influxdb.token_file: give either token or token_file, not both",
        ),
        ("[sinks.mqtt]\ntopic_prefix = 'a/#'\n", "sinks.mqtt.topic_prefix: must not contain"),
        ("[sinks.mqtt]\nport = 0\n", "sinks.mqtt.port: Input should be greater than"),
        ("[sinks.mqtt]\nca_file = '/x'\n", "sinks.mqtt.ca_file: given but tls is false"),
        ("[sinks.kafka]\nurl = 'x'\n", "sinks.kafka: unknown option"),
        ("[metrics]\ntop_n = 0\n", "metrics.top_n: Input should be greater than or equal to 1"),
    ],
)
def test_bad_sink_config_names_the_field(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, toml), {})
    assert message in str(info.value)


def test_sink_secret_file_is_read_and_never_shown(tmp_path: Path) -> None:
    token = tmp_path / "influx-token"
    token.write_text(SECRET + "\n")
    toml = f"[sinks.influxdb]\nurl = 'http://127.0.0.1:8086'\ntoken_file = '{token}'\n"
    settings = load_settings(write(tmp_path, toml), {})
    assert settings.sinks.influxdb is not None
    assert settings.sinks.influxdb.resolved_token() == SECRET
    assert SECRET not in repr(settings)
    missing = f"[sinks.influxdb]\nurl = 'http://a'\ntoken_file = '{tmp_path / 'nope'}'\n"
    with pytest.raises(ConfigError, match=r"sinks\.influxdb\.token_file: cannot read"):
        load_settings(write(tmp_path, missing), {})


def test_env_sets_sink_replicas_as_json() -> None:
    env = {
        "SIMWATCH_SINKS__ALERTMANAGER__URLS": '["http://127.0.0.1:9093","http://127.0.0.1:9094/"]'
    }
    settings = load_settings(None, env)
    assert settings.sinks.alertmanager is not None
    assert settings.sinks.alertmanager.urls == ["http://127.0.0.1:9093", "http://127.0.0.1:9094"]


def test_env_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[http]\nport = 40000\nhost = '127.0.0.2'\n[engine]\nalpha = 0.01\n")
    env = {
        "SIMWATCH_HTTP__PORT": "39200",
        "SIMWATCH_ENGINE__DIMS": '["apn","country","customer","region"]',
        "SIMWATCH_LOG__FORMAT": "json",
        "SIMWATCH_STATE_DIR": "/srv/simwatch",
        "SIMWATCH_ENGINE__INVENTORY_FILE": "",  # "" means not set
        "OTHER_VAR": "ignored",
    }
    settings = load_settings(path, env)
    assert settings.http.port == 39200  # env wins
    assert settings.http.host == "127.0.0.2"  # file kept where env is silent
    assert settings.engine.alpha == 0.01
    assert settings.engine.dims == ["apn", "country", "customer", "region"]  # extra dim allowed
    assert settings.engine.engine_config().dims == ("apn", "country", "customer", "region")
    assert settings.engine.inventory_file is None
    assert settings.log.format == "json"
    assert settings.state_dir == Path("/srv/simwatch")


def test_env_section_json_merges_and_deeper_variable_refines() -> None:
    env = {"SIMWATCH_HTTP": '{"port": 1234, "auth": "off"}', "SIMWATCH_HTTP__PORT": "4321"}
    settings = load_settings(None, env)
    assert settings.http.port == 4321
    assert settings.http.auth == "off"


def test_env_overrides_one_field_of_a_file_list_item(tmp_path: Path) -> None:
    path = write(tmp_path, MQTT + "port = 1883\n")
    settings = load_settings(path, {"SIMWATCH_SOURCES__MQTT__0__PASSWORD": SECRET})
    assert settings.sources.mqtt[0].resolved_password() == SECRET
    assert settings.sources.mqtt[0].name == "broker-a"


def test_env_item_override_refines_the_environment_list(tmp_path: Path) -> None:
    path = write(tmp_path, MQTT + "port = 1883\n")
    env = {
        "SIMWATCH_SOURCES__MQTT": '[{"name": "env-a", "topics": ["a/#"]}]',  # replaces the file's
        "SIMWATCH_SOURCES__MQTT__0__PORT": "1884",
        "SIMWATCH_SOURCES__MQTT__0__TOPICS": '["b/#"]',  # a list inside an item: JSON
    }
    settings = load_settings(path, env)
    assert [(m.name, m.port, m.topics) for m in settings.sources.mqtt] == [("env-a", 1884, ["b/#"])]


def test_env_item_override_keeps_the_other_items_and_fields(tmp_path: Path) -> None:
    text = MQTT + "port = 1999\n" + MQTT.replace("broker-a", "broker-b")
    settings = load_settings(write(tmp_path, text), {"SIMWATCH_SOURCES__MQTT__1__PORT": "1884"})
    assert [(m.name, m.port) for m in settings.sources.mqtt] == [
        ("broker-a", 1999),
        ("broker-b", 1884),
    ]


def test_env_sets_one_key_of_a_table_and_a_whole_sink() -> None:
    env = {
        "SIMWATCH_SINKS__ALERTMANAGER__URLS": '["http://127.0.0.1:9093"]',
        "SIMWATCH_SINKS__ALERTMANAGER__LABELS__ENV": "prod",
        "SIMWATCH_SINKS__MQTT__PORT": "8883",  # a sink with every field defaulted
    }
    settings = load_settings(None, env)
    assert settings.sinks.alertmanager is not None
    assert settings.sinks.alertmanager.labels == {"env": "prod"}
    assert settings.sinks.mqtt is not None
    assert settings.sinks.mqtt.port == 8883


def test_env_names_are_case_insensitive() -> None:
    settings = load_settings(None, {"simwatch_http__port": "39200", "SimWatch_Log__Level": "debug"})
    assert settings.http.port == 39200
    assert settings.log.level == "debug"


@pytest.mark.parametrize("where", ["toml", "env"])
def test_empty_optional_value_means_not_set(tmp_path: Path, where: str) -> None:
    """ "" unsets every optional option (TOML has no null), not only paths."""
    fields = {"username": "", "password": "", "ca_file": ""}
    if where == "toml":
        text = "[sinks.mqtt]\n" + "".join(f"{k} = ''\n" for k in fields)
        text += "[sinks.alertmanager]\nurls = ['http://a']\nexternal_url = ''\n"
        settings = load_settings(write(tmp_path, text), {})
    else:
        env = {f"SIMWATCH_SINKS__MQTT__{k.upper()}": v for k, v in fields.items()}
        env["SIMWATCH_SINKS__ALERTMANAGER"] = '{"urls": ["http://a"], "external_url": ""}'
        settings = load_settings(None, env)
    mqtt, am = settings.sinks.mqtt, settings.sinks.alertmanager
    assert mqtt is not None
    assert (mqtt.username, mqtt.password, mqtt.ca_file) == (None, None, None)
    assert mqtt.resolved_password() is None
    assert am is not None
    assert am.external_url is None


def test_settings_come_from_pydantic_settings() -> None:
    assert issubclass(Settings, BaseSettings)
    assert Settings.model_config["env_prefix"] == "SIMWATCH_"
    assert Settings.model_config["env_nested_delimiter"] == "__"


def test_settings_built_in_code_read_no_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SIMWATCH_HTTP__PORT", "40000")
    assert Settings().http.port == 39153
    assert Settings(state_dir=Path("x")).state_dir == Path("x")
    assert load_settings(None).http.port == 40000  # load_settings reads os.environ


def test_env_whole_source_list() -> None:
    env = {
        "SIMWATCH_SOURCES__HTTP": '[{"name": "e", "adapter": "emnify", '
        '"base_url": "https://x.test", "token": "' + SECRET + '"}]'
    }
    settings = load_settings(None, env)
    assert settings.sources.http[0].resolved_token() == SECRET
    assert SECRET not in repr(settings)


def test_secret_files_are_read_and_stripped(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(f"  {SECRET}\n", encoding="utf-8")
    (tmp_path / "tok").write_text(f"{SECRET}-tok\n", encoding="utf-8")
    text = MQTT + "password_file = '{tmp}/pw'\n" + HTTP_SRC + "token_file = '{tmp}/tok'\n"
    settings = load_settings(write(tmp_path, text.replace("{tmp}", str(tmp_path))), {})
    # read at load: removing the files afterwards changes nothing
    (tmp_path / "pw").unlink()
    (tmp_path / "tok").unlink()
    assert settings.sources.mqtt[0].resolved_password() == SECRET
    assert settings.sources.http[0].resolved_token() == f"{SECRET}-tok"
    assert SECRET not in str(settings)
    assert SECRET not in repr(settings)
    assert SECRET not in settings.model_dump_json()


def test_empty_secret_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("\n", encoding="utf-8")
    message = load_error(tmp_path, MQTT + "password_file = '{tmp}/pw'\n")
    assert message == f"sources.mqtt[0].password_file: cannot read {tmp_path}/pw: file is empty"


def test_no_password_resolves_to_none() -> None:
    mqtt = MqttSourceSettings(name="a", topics=["t"])
    assert mqtt.resolved_password() is None
    http = HttpSourceSettings(name="b", adapter="generic", base_url="http://127.0.0.1:1")
    assert http.resolved_token() is None


def test_directly_built_source_reads_its_secret_file_lazily(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(SECRET, encoding="utf-8")
    mqtt = MqttSourceSettings(name="a", topics=["t"], password_file=tmp_path / "pw")
    assert mqtt.resolved_password() == SECRET


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            MQTT + f"password = 5\nusername = '{SECRET}x'\n",
            "sources.mqtt[0].password: Input should be a valid string",
        ),
        (
            MQTT + f"password = '{SECRET}'\npassword_file = '/x'\n",
            "sources.mqtt[0].password_file: give either password or password_file, not both",
        ),
        (
            MQTT + f"password = ['{SECRET}']\n",
            "sources.mqtt[0].password: Input should be a valid string",
        ),
        (
            HTTP_SRC + f"token = {{ value = '{SECRET}' }}\n",
            "sources.http[0].token: Input should be a valid string",
        ),
        (
            f"[[sources.http]]\nname = 'x'\ntoken = '{SECRET}'\n",
            "sources.http[0].adapter: Field required; sources.http[0].base_url: Field required",
        ),
    ],
)
def test_secrets_never_in_error_messages(tmp_path: Path, text: str, expected: str) -> None:
    assert load_error(tmp_path, text) == expected  # names the field, never shows the value


def test_secret_in_bad_env_list_not_in_message() -> None:
    env = {"SIMWATCH_SOURCES__MQTT": f'[{{"name": "a", "password": "{SECRET}"}}]'}
    with pytest.raises(ConfigError) as info:
        load_settings(None, env)
    assert str(info.value) == (
        "sources.mqtt[0].topics (from SIMWATCH_SOURCES__MQTT): Field required"
    )


def test_secret_str_hidden_in_repr() -> None:
    mqtt = MqttSourceSettings.model_validate({"name": "a", "topics": ["t"], "password": SECRET})
    assert SECRET not in repr(mqtt)
    assert SECRET not in str(mqtt)
    assert "**********" in repr(mqtt)


def test_extra_dimensions_are_allowed() -> None:
    engine = EngineSettings(dims=["rat", "plan", "region"])
    assert engine.engine_config().dims == ("rat", "plan", "region")


@pytest.mark.parametrize(
    ("host", "auth", "required"),
    [
        ("127.0.0.1", "on", True),
        ("0.0.0.0", "on", True),
        ("example.net", "on", True),
        ("127.0.0.1", "off", False),
        ("::1", "off", False),
        ("localhost", "off", False),
        ("[::1]", "off", False),
        ("127.0.0.9", "off", False),
    ],
)
def test_auth_required(host: str, auth: str, required: bool) -> None:
    settings = HttpSettings.model_validate({"host": host, "auth": auth})
    assert settings.auth_required() is required


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.upper().startswith("SIMWATCH_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_check_config_defaults(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check_config_main([]) == 0
    out = capsys.readouterr()
    assert out.err == ""
    assert out.out.splitlines() == [
        "config OK: built-in defaults",
        "sources:",
        "  simulator 'simulator': 3000 simulated SIMs, seed 1 (built-in: no source configured)",
        "http: listening on 127.0.0.1:39153, auth on (tokens: var/api-token, generated when missing)",  # noqa: E501 - one output line
    ]


def test_check_config_file_with_sources(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "tokens").write_text("t1\n", encoding="utf-8")
    text = (
        f"[http]\nhost = '0.0.0.0'\nport = 8080\ntokens_file = '{tmp_path}/tokens'\n"
        + MQTT
        + HTTP_SRC
        + "[[sources.file]]\nname = 'spool'\npath = '/var/spool/sw'\n"
    )
    path = write(tmp_path, text)
    assert check_config_main(["--config.file", str(path)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"config OK: {path}",
        "sources:",
        "  file 'spool': /var/spool/sw",
        "  mqtt 'broker-a': mqtt://127.0.0.1:1883, topics sims/#",
        "  http 'emnify': emnify adapter, https://x.test",
        f"http: listening on 0.0.0.0:8080, auth on (tokens: {tmp_path}/tokens)",
    ]


def test_check_config_bad_file(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "[http]\nport = 0\n")
    assert check_config_main([f"--config.file={path}"]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == (
        "simwatch: bad config: http.port: Input should be greater than or equal to 1 (got 0)\n"
    )


def test_check_config_reads_the_environment(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("SIMWATCH_LOG__LEVEL", "chatty")
    assert check_config_main([]) == 1
    assert capsys.readouterr().err == (
        "simwatch: bad config: log.level (from SIMWATCH_LOG__LEVEL): Input should be "
        "'debug', 'info', 'warning' or 'error' (got 'chatty')\n"
    )


def test_check_config_missing_file(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check_config_main(["--config.file", str(tmp_path / "x.toml")]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == (
        f"simwatch: bad config: cannot read config file {tmp_path}/x.toml: "
        "No such file or directory\n"
    )


def test_an_empty_sim_list_is_an_error_and_a_missing_one_discovers(tmp_path: Path) -> None:
    cisco = (
        "[[sources.http]]\nname = 'cc'\nadapter = 'cisco'\nbase_url = 'https://cc.test'\n"
        "auth = { kind = 'basic', username = 'ops', password = 'k' }\n"
    )
    assert load_error(tmp_path, cisco + "iccids = []\n") == (
        "sources.http[0].iccids: is empty: list at least one ICCID, or leave iccids out to "
        "take the SIM list from the platform"
    )
    settings = load_settings(write(tmp_path, cisco), {})
    assert settings.sources.http[0].iccids == []  # left out: the platform's list


# ---- [[maintenance]] windows (issue 13) ---------------------------------------------------

_WINDOW = "[[maintenance]]\nname = 'x'\nstart = '2026-01-04T02:00'\n"
BAD_WINDOWS = [
    ("unknown time zone", _WINDOW + "duration_s = 60\ntimezone = 'Mars/Base'\n",
     "maintenance[0].timezone: unknown time zone 'Mars/Base' (IANA names such as Europe/Paris)"),
    ("no duration", _WINDOW, "maintenance[0].duration_s: Field required"),
    ("zero duration", _WINDOW + "duration_s = 0\n",
     "maintenance[0].duration_s: Input should be greater than 0 (got 0)"),
    ("rule too fine", _WINDOW + "duration_s = 60\nrrule = 'FREQ=MINUTELY'\n",
     ("maintenance[0].rrule: FREQ must be one of HOURLY, DAILY, WEEKLY, MONTHLY, YEARLY, "
      "not 'MINUTELY'")),
    ("empty scope values", _WINDOW + "duration_s = 60\nscope = { partner = [] }\n",
     "maintenance[0].scope.partner: expected a value or a non-empty list of values (strings)"),
    ("an id twice", (_WINDOW + "duration_s = 60\nid = 'a'\n") * 2,
     "maintenance: window id 'a' is used twice"),
    ("unknown key", _WINDOW + "duration_s = 60\ncolour = 'red'\n",
     "maintenance[0].colour: unknown option"),
    ("start not a time", "[[maintenance]]\nname = 'x'\nstart = 'sunday'\nduration_s = 60\n",
     "maintenance[0].start: expected a local time YYYY-MM-DDTHH:MM, got 'sunday'"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("toml", "message"), [c[1:] for c in BAD_WINDOWS], ids=[c[0] for c in BAD_WINDOWS]
)
def test_bad_maintenance_window_names_the_field(tmp_path: Path, toml: str, message: str) -> None:
    assert load_error(tmp_path, toml) == message


def test_bad_maintenance_window_from_the_environment_names_the_variable() -> None:
    window = '[{"name": "x", "start": "2026-01-01T00:00", "duration_s": 60, "timezone": "X/Y"}]'
    with pytest.raises(ConfigError) as info:
        load_settings(None, {"SIMWATCH_MAINTENANCE": window})
    assert str(info.value) == (
        "maintenance[0].timezone (from SIMWATCH_MAINTENANCE): unknown time zone 'X/Y' "
        "(IANA names such as Europe/Paris)"
    )


def test_maintenance_windows_load_with_ids(tmp_path: Path) -> None:
    toml = (
        _WINDOW + "duration_s = 7200\ntimezone = 'Europe/Paris'\nrrule = 'FREQ=WEEKLY;BYDAY=SU'\n"
        "scope = { partner = ['20801'], customer = 'acme' }\n"
        "[[maintenance]]\nid = 'upgrade'\nname = 'core upgrade'\nstart = '2026-12-06T23:00'\n"
        "duration_s = 3600\n"
    )
    settings = load_settings(write(tmp_path, toml), {})
    first, second = config_windows(settings.maintenance)
    assert (first.id, first.timezone) == ("cfg-1", "Europe/Paris")
    assert first.rrule == "FREQ=WEEKLY;BYDAY=SU"
    assert first.scope == {"partner": ("20801",), "customer": ("acme",)}
    assert (second.id, second.rrule, second.scope, second.source) == ("upgrade", None, {}, "config")


def test_shipped_config_maintenance_example_is_valid(tmp_path: Path) -> None:
    text = SHIPPED.read_text(encoding="utf-8")
    section = text[text.index("# --- Maintenance") : text.index("# --- Sources")].splitlines()
    lines = [
        line.removeprefix("# ").split("  #")[0]
        for line in section
        if re.match(r"# (\[\[maintenance\]\]|\w+ = )", line)
    ]
    with_rrule = [line for line in lines if not line.startswith("cron = ")]
    settings = load_settings(write(tmp_path, "\n".join(with_rrule) + "\n"), {})
    [window] = config_windows(settings.maintenance)
    assert window.id == "partner-20801-sundays"
    assert window.scope == {"partner": ("20801",)}
    with_cron = [line for line in lines if not line.startswith("rrule = ")]
    settings = load_settings(write(tmp_path, "\n".join(with_cron) + "\n"), {})
    [same] = config_windows(settings.maintenance)
    assert (same.cron, same.rrule) == ("0 2 * * SUN", None)
    assert same.next_occurrence(1_800_000_000) == window.next_occurrence(1_800_000_000)


def test_check_config_lists_windows_and_expectations(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        _WINDOW + "duration_s = 7200\ntimezone = 'Europe/Paris'\nrrule = 'FREQ=WEEKLY;BYDAY=SU'\n"
        "scope = { partner = ['20801', '20810'] }\n"
        "[[maintenance]]\nid = 'up'\nname = 'upgrade'\nstart = '2026-12-06T23:00'\n"
        "duration_s = 3600\n"
        "[engine.expectations.plans.m]\nexpected_interval_s = 3600\n"
    )
    path = write(tmp_path, text)
    assert check_config_main(["--config.file", str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[-4:] == [
        "maintenance windows (more through POST /api/v1/maintenance):",
        (
            "  cfg-1 'x': FREQ=WEEKLY;BYDAY=SU from 2026-01-04T02:00:00 Europe/Paris, 7200 s, "
            "scope partner=20801|20810"
        ),
        "  up 'upgrade': once from 2026-12-06T23:00:00 UTC, 3600 s, scope the whole fleet",
        "expectations: 1 plan(s), 0 customer(s)",
    ]
