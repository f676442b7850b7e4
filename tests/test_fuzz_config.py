"""Bounded fuzzing of configuration loading (issue "Bad input").

Random TOML documents over the real settings tree (the field names are read from the
pydantic models, so new options are fuzzed as soon as they exist), with values of the
right type, of the wrong type, out of range, NaN/infinity, huge, unicode, nested junk,
dates, plus unknown keys; and random ``SIMWATCH_*`` environment variables (real option
paths, whole sections and lists as JSON, junk names). Properties:

* ``load_settings`` returns ``Settings`` or raises ``ConfigError``, never anything else;
* every problem line starts with the option's dotted path (``sources.mqtt[0].port``), or
  with the environment variable's name, optionally followed by ``(from SIMWATCH_...)``,
  then ``: `` and a message; every name in the path is a real option or a key given;
* a value given for a ``password`` or ``token`` never appears in a message;
* settings that load can build the engine's config and the check-config summary.

The bugs this fuzzing found are fixed; a test for each stands at the end.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import tomllib
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, Union, get_args, get_origin

import pytest
from fuzzing import fuzz
from hypothesis import event, given
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr

from simwatch.shell.settings import ConfigError, Settings, load_settings, summary

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

Loc = tuple[str | int, ...]


# ---- the settings tree -----------------------------------------------------------------


def _bare(ann: object) -> object:
    """The annotation without ``| None`` (and without Annotated metadata)."""
    if get_origin(ann) in (Union, types.UnionType):
        args = [a for a in get_args(ann) if a is not type(None)]
        if len(args) == 1:
            return _bare(args[0])
    meta = getattr(ann, "__metadata__", None)
    if meta is not None:
        return _bare(get_args(ann)[0])
    return ann


def _is_model(ann: object) -> bool:
    return isinstance(ann, type) and issubclass(ann, BaseModel)


def walk(model: type[BaseModel], prefix: Loc = ()) -> Iterator[tuple[Loc, object]]:
    """Every option of the tree as (path, bare annotation); sections and lists included."""
    for name, info in model.model_fields.items():
        ann = _bare(info.annotation)
        path = (*prefix, name)
        yield path, ann
        if _is_model(ann):
            yield from walk(ann, path)  # type: ignore[arg-type]
        elif get_origin(ann) is list and _is_model(_bare(get_args(ann)[0])):
            yield from walk(_bare(get_args(ann)[0]), (*path, 0))  # type: ignore[arg-type]
        elif get_origin(ann) in (Union, types.UnionType):  # a table of one of several kinds
            for member in get_args(ann):
                if _is_model(_bare(member)):
                    yield from walk(_bare(member), path)  # type: ignore[arg-type]


OPTIONS: Final = list(walk(Settings))
LEAVES: Final = [(p, a) for p, a in OPTIONS if not _is_model(a) and get_origin(a) is not list]
NAMES: Final = {str(part) for path, _ in OPTIONS for part in path if isinstance(part, str)}
SECRET_NAMES: Final = frozenset({"password", "token"})

# the smallest valid item of each list of sources and each optional sink
ITEMS: Final[dict[Loc, dict[str, Any]]] = {
    ("sources", "simulator"): {"name": "sim"},
    ("sources", "file"): {"name": "f", "path": "records.ndjson"},
    ("sources", "mqtt"): {"name": "m", "topics": ["sims/#"]},
    ("sources", "http"): {"name": "h", "adapter": "emnify", "base_url": "https://x.test"},
    ("sinks", "alertmanager"): {"urls": ["http://127.0.0.1:9093"]},
    ("sinks", "influxdb"): {"url": "http://127.0.0.1:8086"},
    ("sinks", "mqtt"): {},
}

# ---- values ----------------------------------------------------------------------------

KEY = st.text("abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=10)
SAFE_TEXT = st.text(st.characters(codec="utf-8"), max_size=40)  # no lone surrogates
toml_scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([0, -1, 1, 65535, 65536, 2**31, 2**63 - 1, -(2**63)]),
    st.floats(),
    st.sampled_from([0.0, -0.0, 1e-300, 1e300, math.inf, -math.inf, math.nan]),
    SAFE_TEXT,
    st.sampled_from(["", " ", "0", "1e3", "true", "none", "null", "127.0.0.1", "\x00", "é" * 50]),
    st.datetimes(timezones=st.none() | st.just(dt.UTC)),
    st.dates(),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEY, inner, max_size=3),
    max_leaves=8,
)


def plausible(ann: object) -> st.SearchStrategy[Any]:  # noqa: PLR0911 - one per type
    """Values of the annotation's own type, often in range, sometimes not."""
    if ann is bool:
        return st.booleans()
    if ann is int:
        return st.integers(-5, 10**6) | st.sampled_from([0, 1, 10, 1000, 65535, 100_001])
    if ann is float:
        return st.floats(-1e6, 1e7) | st.sampled_from([0.0, 1e-9, 3600.0, 86400.0, math.inf])
    if get_origin(ann) is Literal:
        return st.sampled_from(get_args(ann)) | SAFE_TEXT
    if get_origin(ann) is list:
        return st.lists(
            SAFE_TEXT | st.sampled_from(["apn", "country", "http://x.test"]), max_size=4
        )
    if get_origin(ann) is dict:
        return st.dictionaries(KEY, SAFE_TEXT | toml_scalars, max_size=3)
    if ann is SecretStr:
        return st.integers(0, 999).map(lambda n: f"S3CR3T-{n:03d}")
    if ann is Path:
        return st.sampled_from(["", "var", "/nonexistent/x", "/etc/hostname", "."]) | SAFE_TEXT
    return SAFE_TEXT | st.sampled_from(["", "http://127.0.0.1:1", "https://x.test/", "localhost"])


def set_in(data: dict[str, Any], path: Loc, value: object) -> None:
    """Set ``value`` at ``path``, creating sections and a valid first list item."""
    node: Any = data
    for depth, part in enumerate(path[:-1]):
        nxt = path[depth + 1]
        if isinstance(part, int):
            node = node[part]
            continue
        here = (*path[: depth + 1],)
        if isinstance(nxt, int):
            if not isinstance(node.get(part), list) or not node[part]:
                node[part] = [dict(ITEMS.get(here, {}))]
            elif not isinstance(node[part][0], dict):
                node[part][0] = dict(ITEMS.get(here, {}))
        elif not isinstance(node.get(part), dict):
            node[part] = dict(ITEMS.get(here, {}))
        node = node[part]
    node[path[-1]] = value


@st.composite
def documents(draw: st.DrawFn) -> tuple[dict[str, Any], set[str]]:
    """(a TOML-able settings dict, the secret values in it)."""
    data: dict[str, Any] = {}
    secrets: set[str] = set()
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["plausible", "plausible", "junk", "section", "unknown"]))
        if kind == "section":
            path, _ann = draw(st.sampled_from([o for o in OPTIONS if o not in LEAVES]))
            value: object = draw(toml_values)
        elif kind == "unknown":
            parent, _ann = draw(st.sampled_from([o for o in OPTIONS if _is_model(o[1])]))
            path, value = (*parent, draw(KEY)), draw(toml_values)
        else:
            path, ann = draw(st.sampled_from(LEAVES))
            value = draw(plausible(ann) if kind == "plausible" else toml_values)
            if path[-1] in SECRET_NAMES and isinstance(value, str) and value.startswith("S3CR3T"):
                secrets.add(value)
        set_in(data, path, value)
    return data, secrets


def env_name(path: Loc, lower: bool = False) -> str:
    name = "SIMWATCH_" + "__".join(str(p).upper() for p in path)
    return name.lower() if lower else name


env_values = st.one_of(
    SAFE_TEXT,
    st.sampled_from([
        "", "0", "-1", "65536", "1e999", "nan", "inf", "true", "off", "null", "[]", "{}", "[1]",
        '{"a": 1}', '["apn"]', '"x"', "[", "{", '{"port": "x"}', '[{"name": ""}]',
    ]),
)  # fmt: skip


@st.composite
def environments(draw: st.DrawFn) -> dict[str, str]:
    env: dict[str, str] = {"PATH": "/usr/bin", "SIMWATCHER": "not ours"}
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["leaf", "leaf", "section", "junk"]))
        if kind == "junk":
            name = "SIMWATCH_" + draw(st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_", max_size=14))
        else:
            pool = LEAVES if kind == "leaf" else [o for o in OPTIONS if o not in LEAVES]
            path, _ann = draw(st.sampled_from(pool))
            name = env_name(path, lower=draw(st.integers(0, 9)) == 0)
            if path[-1] in SECRET_NAMES and draw(st.booleans()):
                env[name] = f"S3CR3T-{draw(st.integers(0, 999)):03d}"
                continue
        env[name] = draw(env_values)
    return env


# ---- TOML writer (the test's own: TOML has no null; every key is quoted) ---------------


def toml_text(value: object) -> str:  # noqa: PLR0911 - one return per TOML type
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_text(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{json.dumps(k)} = {toml_text(v)}" for k, v in value.items())
        return "{" + items + "}"
    raise TypeError(value)  # pragma: no cover - the strategies make no other values


def to_toml(data: Mapping[str, object]) -> str:
    return "".join(f"{json.dumps(k)} = {toml_text(v)}\n" for k, v in data.items())


def same(a: object, b: object) -> bool:
    """Equality with NaN equal to itself."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


# ---- checks ----------------------------------------------------------------------------

PATH = r"(?:[a-z0-9_]+|\[\d+\])(?:\[\d+\])*(?:\.[a-z0-9_]+(?:\[\d+\])*)*"
PROBLEM: Final = re.compile(rf"^(?:(?P<path>\(top level\)|{PATH})|(?P<var>(?i:simwatch_)\w*)): \S")
# a problem with a value from a variable: the variable's option path, then anything the
# variable's JSON value held (keys of any text), then the variable's name
FROM_ENV: Final = re.compile(r"^(?P<path>.*?) \(from (?P<env>(?i:simwatch_)\w*)\): \S")


def dotted(parts: list[str]) -> str:
    """``["sources", "mqtt", "0", "port"]`` as ``sources.mqtt[0].port``."""
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isascii() and part.isdigit() else (f".{part}" if out else part)
    return out


def keys_of(value: object) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from keys_of(item)
    elif isinstance(value, list):
        for item in value:
            yield from keys_of(item)


def check_error(
    exc: ConfigError, data: dict[str, Any], env: Mapping[str, str], secrets: set[str]
) -> None:
    assert exc.problems
    assert str(exc) == "; ".join(exc.problems)
    given = (
        NAMES
        | set(keys_of(data))
        | {part.lower() for name in env for part in name[len("SIMWATCH_") :].split("__")}
    )
    for problem in exc.problems:
        from_env = FROM_ENV.match(problem)
        if from_env:
            name = from_env.group("env")
            assert name in env, problem
            option = dotted(name[len("SIMWATCH_") :].lower().split("__"))
            where = from_env.group("path")  # the option, a part of it, or inside its value
            assert where.startswith(option) or option.startswith(where), (option, problem)
            continue
        found = PROBLEM.match(problem)
        assert found, problem
        path = found.group("path")
        if path and path != "(top level)":
            for part in re.sub(r"\[\d+\]", "", path).split("."):
                assert part in given or not part, (part, problem)
        if found.group("var"):
            assert found.group("var") in env, problem
    for secret in secrets:
        assert secret not in str(exc)


def load_checked(
    path: Path | None, data: dict[str, Any], env: dict[str, str], secrets: set[str]
) -> None:
    try:
        loaded = load_settings(path, env)
    except ConfigError as exc:
        event(f"ConfigError with {min(len(exc.problems), 3)}+ problems")
        check_error(exc, data, env, secrets)
        return
    event("loaded")
    assert isinstance(loaded, Settings)
    loaded.engine.engine_config()
    assert summary(loaded)


# ---- the properties --------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-config")


@fuzz(400)
@given(documents())
def test_random_documents_load_or_name_each_bad_field(
    workdir: Path, doc: tuple[dict[str, Any], set[str]]
) -> None:
    data, secrets = doc
    text = to_toml(data)
    assert same(tomllib.loads(text), data)  # the writer is right, so the fuzz is
    path = workdir / "simwatch.toml"
    path.write_text(text, encoding="utf-8")
    load_checked(path, data, {}, secrets)


@fuzz(300)
@given(environments())
def test_random_environments_load_or_name_each_bad_variable(env: dict[str, str]) -> None:
    secrets = {v for v in env.values() if v.startswith("S3CR3T-")}
    load_checked(None, {}, env, secrets)


@fuzz(250)
@given(documents(), environments())
def test_documents_with_environments(
    workdir: Path, doc: tuple[dict[str, Any], set[str]], env: dict[str, str]
) -> None:
    data, secrets = doc
    path = workdir / "simwatch-env.toml"
    path.write_text(to_toml(data), encoding="utf-8")
    load_checked(path, data, env, secrets | {v for v in env.values() if v.startswith("S3CR3T-")})


@fuzz(100)
@given(st.binary(max_size=300) | SAFE_TEXT.map(str.encode))
def test_any_file_bytes(workdir: Path, raw: bytes) -> None:
    path = workdir / "junk.toml"
    path.write_bytes(raw)
    try:
        load_settings(path, {})
    except ConfigError as exc:
        assert exc.problems  # noqa: PT017 - a fuzz check of whatever was raised
        for problem in exc.problems:
            assert problem.startswith(
                (f"cannot read config file {path}", f"{path}: ")
            ) or PROBLEM.match(problem), problem


# ---- bugs the fuzzing found (fixed; these keep them fixed) ----------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"SIMWATCH_SOURCES__FILE": "[]", "SIMWATCH_SOURCES__FILE__NAME": "x"},
            (
                "sources.file (from SIMWATCH_SOURCES__FILE__NAME): a list: set the whole list as "
                "JSON in SIMWATCH_SOURCES__FILE, or one field of an item as "
                "SIMWATCH_SOURCES__FILE__0__FIELD"
            ),
        ),
        (
            {"SIMWATCH_SOURCES__FILE": "[1]", "SIMWATCH_SOURCES__FILE__0__NAME": "x"},
            (
                "sources.file[0] (from SIMWATCH_SOURCES__FILE__0__NAME): not a section, so it has "
                "no 'name'"
            ),
        ),
        (
            {"SIMWATCH_HTTP__PORT": "1", "SIMWATCH_HTTP__PORT__X": "1"},
            "http.port (from SIMWATCH_HTTP__PORT__X): not a section, so it has no 'x'",
        ),
    ],
    ids=["below-list", "below-scalar-item", "below-scalar"],
)
def test_env_var_below_a_list_or_scalar_is_a_config_error(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, env)
    assert str(info.value) == message


def test_env_name_with_a_superscript_digit_is_a_config_error() -> None:
    with pytest.raises(
        ConfigError, match=r"^sources\.file \(from SIMWATCH_SOURCES__FILE__\u00b2\): a list"
    ):
        load_settings(None, {"SIMWATCH_SOURCES__FILE__\u00b2": "x"})


@pytest.mark.parametrize("where", ["toml", "env"])
def test_integer_of_5000_digits_is_a_config_error(tmp_path: Path, where: str) -> None:
    path = tmp_path / "simwatch.toml"
    path.write_text("[http]\nport = " + "1" * 5000 + "\n" if where == "toml" else "")
    env = {"SIMWATCH_ENGINE__DIMS": "1" * 5000} if where == "env" else {}
    with pytest.raises(ConfigError) as info:
        load_settings(path, env)
    start = {
        "toml": f"{path}: invalid TOML: ValueError: Exceeds the limit (4300 digits)",
        "env": "engine.dims (from SIMWATCH_ENGINE__DIMS): not valid JSON: Exceeds the limit",
    }[where]
    assert str(info.value).startswith(start)


class CrashedError(AssertionError):
    """A crash re-raised without its (deep, slow to render) traceback."""


@pytest.mark.parametrize("where", ["toml", "env"])
def test_deeply_nested_value_is_a_config_error(tmp_path: Path, where: str) -> None:
    path = tmp_path / "simwatch.toml"
    path.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n" if where == "toml" else "")
    env = {"SIMWATCH_ENGINE__DIMS": "[" * 100_000} if where == "env" else {}
    try:
        load_settings(path, env)
    except RecursionError:
        raise CrashedError("RecursionError") from None
    except ConfigError as exc:
        message = str(exc)
    else:
        pytest.fail("a value nested 5000 deep loaded without an error")
    expected = {
        "toml": f"{path}: invalid TOML: RecursionError: maximum recursion depth exceeded",
        "env": (
            "engine.dims (from SIMWATCH_ENGINE__DIMS): not valid JSON: maximum recursion "
            "depth exceeded"
        ),
    }[where]
    assert message.startswith(expected), message


def test_overlong_path_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^engine\.inventory_file"):
        load_settings(None, {"SIMWATCH_ENGINE__INVENTORY_FILE": "a" * 300})
