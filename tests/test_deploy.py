"""The deploy/ files: the systemd unit, the Dockerfile, the compose stack and its configs.

Nothing here builds or pulls an image (no registry access at test time). The unit is
checked by ``systemd-analyze`` when it is installed; the Dockerfile by parsing it; the
compose file by loading it and following every reference: the files it mounts exist,
the simwatch config it mounts loads (with the stack's environment), and every host name
and port in the mounted configs is a compose service and the port it listens on.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import mosquitto
import pytest
import yaml
from aiohttp import web
from mosquitto import free_port

from simwatch.core.engine import Engine
from simwatch.http.app import make_app
from simwatch.shell.settings import ConfigError, HttpSettings, Settings, load_settings, read_tokens

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
UNIT = DEPLOY / "systemd" / "simwatch.service"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE = DEPLOY / "docker-compose.yml"
DOTENV = DEPLOY / ".env"
SIMWATCH_TOML = DEPLOY / "simwatch" / "simwatch.toml"
MOSQUITTO_CONF = DEPLOY / "mosquitto" / "mosquitto.conf"
UNIT_BINARY = "/opt/simwatch/bin/simwatch"
CONFIG_IN_IMAGE = "/etc/simwatch/simwatch.toml"
STATE_DIR = "/var/lib/simwatch"
SERVICES = {"simwatch", "prometheus", "alertmanager", "grafana", "influxdb", "mosquitto"}
# Files the stack mounts that other parts of the project own: they must exist too.
MOUNTED_ELSEWHERE = [
    "deploy/prometheus/prometheus.yml",
    "deploy/prometheus/alerts.rules.yml",
    "deploy/prometheus/recording.rules.yml",
    "deploy/alertmanager/alertmanager.yml",
    "grafana/provisioning",
    "grafana/dashboards",
]


def clean_env() -> dict[str, str]:
    """This process's environment without SIMWATCH_ variables (they would change configs)."""
    return {k: v for k, v in os.environ.items() if not k.upper().startswith("SIMWATCH_")}


# ---- systemd ----------------------------------------------------------------------------


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> every value given (systemd keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"a key outside any section: {line!r}"
        assert "=" in line, f"not a key=value line: {line!r}"
        assert not line.endswith("\\"), "no continuation lines, please"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|min|m|h)?", value)
    assert match, value
    return float(match[1]) * units[match[2] or "s"]


def test_unit_is_hardened() -> None:
    unit = parse_unit(UNIT.read_text(encoding="utf-8"))
    service = unit["Service"]

    def one(key: str) -> str:
        values = service.get(key, [])
        assert len(values) == 1, f"{key}: {values}"
        return values[0]

    # not root: a dynamic user (or a named one that is not root)
    assert one("DynamicUser") == "yes"
    assert "User" not in service or service["User"] not in (["root"], ["0"])
    # read-only everywhere but the state directory
    assert one("ProtectSystem") == "strict"
    assert one("StateDirectory") == "simwatch"
    assert one("ReadWritePaths") == STATE_DIR
    assert one("WorkingDirectory") == STATE_DIR
    assert f"SIMWATCH_STATE_DIR={STATE_DIR}" in service["Environment"]
    for flag in (
        "NoNewPrivileges",
        "PrivateTmp",
        "ProtectHome",
        "PrivateDevices",
        "RestrictSUIDSGID",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectControlGroups",
        "LockPersonality",
    ):
        assert one(flag) == "yes", flag
    assert one("CapabilityBoundingSet") == ""  # no capability at all
    assert one("AmbientCapabilities") == ""
    assert set(one("RestrictAddressFamilies").split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert service["SystemCallFilter"][0] == "@system-service"
    assert one("SystemCallArchitectures") == "native"
    memory = re.fullmatch(r"(\d+)([KMG])", one("MemoryMax"))
    assert memory is not None
    assert int(memory[1]) * {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[memory[2]] >= 1 << 30
    assert one("Restart") == "on-failure"
    # the daemon gives each of up to three sinks 5 s for a last flush at shutdown
    assert seconds(one("TimeoutStopSec")) >= 20
    assert one("KillSignal") == "SIGTERM"
    # the commands: run the config file; check it first
    assert shlex.split(one("ExecStart")) == [UNIT_BINARY, "run", "--config.file", CONFIG_IN_IMAGE]
    assert shlex.split(one("ExecStartPre")) == [
        UNIT_BINARY,
        "run",
        "--config.check",
        "--config.file",
        CONFIG_IN_IMAGE,
    ]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    assert unit["Unit"]["After"] == ["network-online.target"]


def unit_command(key: str, config: Path) -> list[str]:
    """The unit's command for ``key``, runnable here: this checkout's simwatch, ``config``."""
    service = parse_unit(UNIT.read_text(encoding="utf-8"))["Service"]
    argv = shlex.split(service[key][0])
    assert argv[0] == UNIT_BINARY
    return [
        sys.executable,
        "-m",
        "simwatch",
        *(str(config) if a == CONFIG_IN_IMAGE else a for a in argv[1:]),
    ]


def test_unit_exec_start_pre_accepts_a_good_config_and_names_a_bad_field(tmp_path: Path) -> None:
    command = unit_command("ExecStartPre", REPO / "config" / "simwatch.toml")
    good = subprocess.run(
        command, capture_output=True, text=True, timeout=60, env=clean_env(), check=False
    )
    assert good.returncode == 0, good.stderr
    assert "config OK" in good.stdout
    bad_config = tmp_path / "bad.toml"
    bad_config.write_text("[http]\nport = 70000\n")
    bad = subprocess.run(
        unit_command("ExecStartPre", bad_config),
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        check=False,
    )
    assert bad.returncode == 1  # systemd does not start ExecStart after this
    assert "http.port" in bad.stderr


SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def installed_unit(tmp_path: Path) -> Path:
    """The unit with this checkout's simwatch as the binary (verify checks it exists)."""
    binary = Path(sys.executable).parent / "simwatch"
    if not binary.exists():
        binary = Path(shutil.which("simwatch") or "/nonexistent")
    assert binary.exists(), "the simwatch console script is not installed"
    path = tmp_path / "simwatch.service"
    path.write_text(UNIT.read_text(encoding="utf-8").replace(UNIT_BINARY, str(binary)))
    return path


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    path = installed_unit(tmp_path)
    assert SYSTEMD_ANALYZE is not None
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # any warning about our unit (unknown key, bad value) fails, not just errors
    ours = [line for line in (result.stdout + result.stderr).splitlines() if path.name in line]
    assert ours == []


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_security_rates_the_unit_ok(tmp_path: Path) -> None:
    path = installed_unit(tmp_path)
    assert SYSTEMD_ANALYZE is not None
    result = subprocess.run(
        # exposure 0.0 (locked down) .. 10.0 (unprotected), threshold in tenths
        [SYSTEMD_ANALYZE, "security", "--offline=yes", "--threshold=20", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if "unrecognized option" in result.stderr:
        pytest.skip("this systemd-analyze has no offline security analysis (systemd < 250)")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    overall = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert overall is not None
    assert float(overall[1]) <= 2.0  # "OK" in systemd's words


# ---- Dockerfile -------------------------------------------------------------------------

KNOWN_INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
    "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}  # fmt: skip


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) in order; comments dropped, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue  # comments (and parser directives) and blank lines
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        pending += line
        keyword, _, args = pending.partition(" ")
        out.append((keyword, args.strip()))
        pending = ""
    assert pending == "", "a continuation line at the end of the file"
    return out


def instruction(name: str) -> list[str]:
    return [args for keyword, args in dockerfile() if keyword == name]


def test_dockerfile_parses_and_every_instruction_is_known() -> None:
    instructions = dockerfile()
    assert instructions
    for keyword, args in instructions:
        assert keyword in KNOWN_INSTRUCTIONS, keyword  # also catches lower case
        assert args, f"{keyword} without arguments"
    # two stages: wheels built where a compiler is (the optional C extension), the
    # runtime on the slim image
    assert [a for k, a in instructions if k == "FROM"] == [
        "python:3.11 AS build",
        "python:3.11-slim",
    ]
    for keyword in ("ENTRYPOINT", "CMD", "VOLUME"):  # exec (JSON) form, no shell
        (args,) = instruction(keyword)
        assert isinstance(json.loads(args), list), keyword


def test_dockerfile_runs_simwatch_as_a_non_root_user_from_the_package() -> None:
    (user,) = instruction("USER")
    name = user.split(":")[0]
    assert name not in ("root", "0")
    runs = " ".join(instruction("RUN"))
    assert re.search(rf"useradd\b.*\b{name}\b", runs), "the user is created"
    assert re.search(r"\bpip wheel --wheel-dir /wheels \.(\s|$)", runs), "built from the repo"
    assert "_cdecode" in runs, "the build stage checks that the C extension was compiled"
    assert re.search(r"\bpip install --no-index --find-links /tmp/wheels simwatch\b", runs)
    assert ("--from=build /wheels", "/tmp/wheels") in [
        (" ".join(a.split()[:-1]), a.split()[-1]) for a in instruction("COPY")
    ]
    assert json.loads(instruction("ENTRYPOINT")[0]) == ["simwatch", "run"]
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["scripts"]["simwatch"] == "simwatch.cli:main"
    (expose,) = instruction("EXPOSE")
    assert expose == str(HttpSettings().port) == "39153"
    assert json.loads(instruction("VOLUME")[0]) == [STATE_DIR]
    assert f"SIMWATCH_STATE_DIR={STATE_DIR}" in instruction("ENV")
    assert instruction("WORKDIR")[-1] == STATE_DIR  # relative config paths land in the volume


def test_dockerfile_healthcheck_asks_healthy_with_python_only() -> None:
    (healthcheck,) = instruction("HEALTHCHECK")
    options, _, command = healthcheck.partition(" CMD ")
    assert "--interval=" in options
    assert "--start-period=" in options
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"]
    assert "urllib.request" in argv[2]
    assert "http://127.0.0.1:39153/-/healthy" in argv[2]
    assert "curl" not in healthcheck


def copies() -> list[tuple[list[str], str]]:
    """Each COPY from the build context as (sources relative to it, destination); a
    COPY from another stage (``--from=``) takes nothing from the context."""
    out = []
    for args in instruction("COPY"):
        if "--from=" in args:
            continue
        parts = [p for p in args.split() if not p.startswith("--")]
        out.append((parts[:-1], parts[-1]))
    return out


def test_dockerfile_copies_files_that_exist_and_its_config_is_valid() -> None:
    sources = [source for srcs, _ in copies() for source in srcs]
    for source in sources:
        assert (REPO / source).exists(), source
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    # what `pip install .` reads: the project file, its readme, the package
    for needed in ("pyproject.toml", pyproject["project"]["readme"], "simwatch"):
        assert needed in sources, needed
    # the config baked in is the one CMD runs, and it is valid
    (cmd,) = instruction("CMD")
    config_in_image = json.loads(cmd)[json.loads(cmd).index("--config.file") + 1]
    assert config_in_image == CONFIG_IN_IMAGE
    (baked,) = [srcs for srcs, dest in copies() if dest == config_in_image]
    settings = load_settings(REPO / baked[0], {"SIMWATCH_STATE_DIR": STATE_DIR})
    assert settings.http.port == 39153


def dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    excluded = False
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").strip("/")
        regex = "".join(
            ".*" if part == "**" else re.escape(part).replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
            for part in re.split(r"(\*\*)", pattern)
        )
        parts = PurePosixPath(path).parts
        candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        if any(re.fullmatch(regex, c) for c in candidates):
            excluded = not negate
    return excluded


def test_dockerignore_sends_what_the_image_copies_and_nothing_secret() -> None:
    copied = []
    for source in (s for srcs, _ in copies() for s in srcs):
        base = REPO / source
        files = [base] if base.is_file() else [p for p in base.rglob("*") if p.is_file()]
        copied += [
            f.relative_to(REPO).as_posix()
            for f in files
            # built in place: bytecode, the optional C extension (setup.py)
            if "__pycache__" not in f.parts and f.suffix not in (".pyc", ".pyo", ".so")
        ]
    assert "simwatch/core/data/operators.csv" in copied  # package data, needed by pip install .
    kept_out = [path for path in copied if dockerignore_excludes(path)]
    assert kept_out == []
    for path in (
        ".venv/bin/python",
        "tests/test_deploy.py",
        "deploy/.env",
        "deploy/simwatch/tokens",
        "var/simwatch-deadletter.ndjson",
        "simwatch/__pycache__/api.cpython-311.pyc",
        "simwatch.egg-info/PKG-INFO",
        "simwatch/core/_cdecode.cpython-311-x86_64-linux-gnu.so",
    ):
        assert dockerignore_excludes(path), path


async def test_the_healthcheck_command_passes_against_the_api_even_with_auth_on() -> None:
    """The image's HEALTHCHECK, run here against simwatch's API set up as in the stack."""
    (healthcheck,) = instruction("HEALTHCHECK")
    code = json.loads(healthcheck.partition(" CMD ")[2])[2]
    port = free_port()
    settings = HttpSettings(host="127.0.0.1", port=port, auth="on")
    tokens = read_tokens(DEPLOY / "simwatch" / "tokens")
    app = make_app(Engine(), now=time.time, settings=settings, tokens=tokens)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        check = code.replace(":39153/", f":{port}/")
        process = await asyncio.create_subprocess_exec(sys.executable, "-c", check)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        await runner.cleanup()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", check, stderr=asyncio.subprocess.DEVNULL
    )
    assert await asyncio.wait_for(process.wait(), 30) != 0  # nothing listens: unhealthy


# ---- the compose stack ------------------------------------------------------------------


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def dotenv() -> dict[str, str]:
    values = {}
    for raw in DOTENV.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, line
            values[key.strip()] = value.strip()
    return values


VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?][^}]*)?\}")


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:?message}``, ``${VAR:-default}`` and ``$$``."""
    value = VARIABLE.sub(lambda m: env[m[1]], value)
    return value.replace("$$", "$")


def mounts(service: Mapping[str, Any]) -> Iterator[tuple[str, str, bool]]:
    """(source, target, is a bind mount) for each short-syntax volume of a service."""
    for entry in service.get("volumes", []):
        assert isinstance(entry, str), "short syntax only"
        source, target, *_mode = entry.split(":")
        yield source, target, source.startswith((".", "/"))


def binds(service: Mapping[str, Any]) -> dict[str, Path]:
    """Container path -> host path of a service's bind mounts."""
    return {t: (DEPLOY / s).resolve() for s, t, bind in mounts(service) if bind}


def published(service: Mapping[str, Any]) -> list[tuple[str, int, int]]:
    """(host address, host port, container port) for each published port."""
    out = []
    for entry in service.get("ports", []):
        address, host_port, container_port = str(entry).split(":")
        out.append((address, int(host_port), int(container_port)))
    return out


def listens(services: Mapping[str, Any]) -> dict[str, int]:
    """Service name -> the container port it listens on (every service publishes one)."""
    out = {}
    for name, service in services.items():
        ports = published(service)
        assert len(ports) == 1, name
        out[name] = ports[0][2]
    return out


def command_flag(service: Mapping[str, Any], flag: str) -> str:
    (value,) = [a.split("=", 1)[1] for a in service["command"] if a.startswith(f"{flag}=")]
    return str(value)


def test_compose_has_the_whole_stack_healthy_and_ordered() -> None:
    data = compose()
    services = data["services"]
    assert set(services) == SERVICES
    declared = set(data.get("volumes", {}))
    for name, service in services.items():
        assert service.get("image"), name
        assert service.get("restart") == "unless-stopped", name
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD", name  # exec form: no shell needed in the image
        for url in re.findall(r"http://[^'\" ]+", " ".join(test)):
            assert host_port(url)[1] == listens(services)[name], f"{name}: {url}"
        for source, _target, bind in mounts(service):
            if not bind:
                assert source in declared, f"{name}: named volume {source} is not declared"
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert condition["condition"] in ("service_started", "service_healthy")
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency]
        # published on the host's loopback only
        for address, _host_port, _container_port in published(service):
            assert address == "127.0.0.1", name
    # the start order has no cycle
    order: list[str] = []
    while len(order) < len(services):
        ready = [
            n
            for n, s in services.items()
            if n not in order and all(d in order for d in s.get("depends_on", {}))
        ]
        assert ready, f"a depends_on cycle among {set(services) - set(order)}"
        order += sorted(ready)
    assert order.index("simwatch") > order.index("mosquitto")
    # simwatch's compose healthcheck is the image's HEALTHCHECK
    (healthcheck,) = instruction("HEALTHCHECK")
    assert services["simwatch"]["healthcheck"]["test"][1:] == json.loads(
        healthcheck.partition(" CMD ")[2]
    )
    assert {"simwatch-state", "influxdb-data", "mosquitto-data"} <= declared


def test_every_file_the_stack_mounts_exists() -> None:
    data = compose()
    mounted = []
    for name, service in data["services"].items():
        for source, target, bind in mounts(service):
            if bind:
                path = (DEPLOY / source).resolve()
                assert path.exists(), f"{name}: {source} -> {target}: missing"
                mounted.append(path.relative_to(REPO).as_posix())
    for elsewhere in MOUNTED_ELSEWHERE:
        assert elsewhere in mounted, f"{elsewhere} is not mounted"
    build = data["services"]["simwatch"]["build"]
    context = (DEPLOY / build["context"]).resolve()
    assert context == REPO
    assert (context / build["dockerfile"]).resolve() == DOCKERFILE
    assert (REPO / ".dockerignore").is_file()


def test_every_variable_the_stack_uses_is_in_the_env_file() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    used = {m[1] for m in VARIABLE.finditer(text)}
    assert used == {"INFLUXDB_TOKEN", "INFLUXDB_ADMIN_PASSWORD", "GRAFANA_ADMIN_PASSWORD"}
    env = dotenv()
    assert used <= set(env)
    assert all(env[name] for name in used)


def stack_settings(tmp_path: Path) -> Settings:
    """simwatch's settings as its container sees them, with container paths mapped here.

    Bind-mounted files map to the repository's files, named volumes to temp folders;
    the environment is the service's (interpolated from deploy/.env) plus the image's.
    """
    service = compose()["services"]["simwatch"]
    text = SIMWATCH_TOML.read_text(encoding="utf-8")
    paths: dict[str, str] = {t: str(p) for t, p in binds(service).items()}
    for source, target, bind in mounts(service):
        if not bind:
            paths[target] = str(tmp_path / source)
            (tmp_path / source).mkdir()

    def local(path: str) -> str:
        for target, here in sorted(paths.items(), key=lambda kv: -len(kv[0])):
            if path == target or path.startswith(target + "/"):
                return here + path[len(target) :]
        return path

    text = re.sub(r'"(/[^"]*)"', lambda m: json.dumps(local(m[1])), text)
    config = tmp_path / "simwatch.toml"
    config.write_text(text, encoding="utf-8")
    env = {k: interpolate(str(v), dotenv()) for k, v in service["environment"].items()}
    image_env = dict(e.split("=", 1) for e in instruction("ENV") if "=" in e and " " not in e)
    env.update({k: local(v) for k, v in image_env.items() if k.startswith("SIMWATCH_")})
    return load_settings(config, env)


def test_the_stack_config_loads_with_auth_on(tmp_path: Path) -> None:
    service = compose()["services"]["simwatch"]
    # the config the container runs is the one mounted from deploy/simwatch/
    command = service["command"]
    config_in_container = command[command.index("--config.file") + 1]
    assert binds(service)[config_in_container] == SIMWATCH_TOML
    settings = stack_settings(tmp_path)
    http = settings.http
    assert http.host == "0.0.0.0"  # the container's interfaces; published on loopback
    assert http.auth_required()
    assert http.tokens_file is not None
    assert read_tokens(http.tokens_file), "at least one API token"
    assert published(service) == [("127.0.0.1", http.port, http.port)]
    assert settings.state_dir == tmp_path / "simwatch-state"
    influx = settings.sinks.influxdb
    assert influx is not None
    assert influx.resolved_token() == dotenv()["INFLUXDB_TOKEN"]
    # and a wrong value would have been caught: the loader is really reading this file
    broken = SIMWATCH_TOML.read_text(encoding="utf-8").replace("port = 39153", "port = 0")
    bad = tmp_path / "bad.toml"
    bad.write_text(broken)
    with pytest.raises(ConfigError, match=r"http\.port"):
        load_settings(bad, {})


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url if "://" in url else f"tcp://{url}")
    assert parts.hostname is not None
    assert parts.port is not None, f"{url}: give the port explicitly"
    return parts.hostname, parts.port


def mosquitto_listener() -> int:
    listeners = [
        line.split()
        for line in MOSQUITTO_CONF.read_text(encoding="utf-8").splitlines()
        if line.startswith("listener ")
    ]
    assert len(listeners) == 1
    return int(listeners[0][1])


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT filter matching (``+`` one level, ``#`` the rest)."""
    f_parts, t_parts = topic_filter.split("/"), topic.split("/")
    for i, part in enumerate(f_parts):
        if part == "#":
            return True
        if i >= len(t_parts) or (part not in ("+", t_parts[i])):
            return False
    return len(f_parts) == len(t_parts)


def test_simwatch_talks_to_the_stack_services_on_their_ports(tmp_path: Path) -> None:
    services = compose()["services"]
    ports = listens(services)
    assert ports["mosquitto"] == mosquitto_listener()
    settings = stack_settings(tmp_path)
    assert ports["simwatch"] == settings.http.port
    # records in from the stack's broker, events out to it
    (source,) = settings.sources.mqtt
    sink = settings.sinks.mqtt
    assert sink is not None
    for side in (source, sink):
        assert (side.host, side.port) == ("mosquitto", ports["mosquitto"])
    assert source.client_id != sink.client_id  # the broker would kick one off
    assert not source.clean_session  # records queue while simwatch restarts
    # the source never reads what the sink publishes (no feedback loop)
    prefix = sink.topic_prefix
    for published_topic in (f"{prefix}/incidents/events", f"{prefix}/sims/893/state"):
        assert not any(topic_matches(f, published_topic) for f in source.topics)
    assert topic_matches(source.topics[0], "sims/device-1/records")
    # alerts to Alertmanager, history to InfluxDB (the org and bucket InfluxDB creates)
    alertmanager = settings.sinks.alertmanager
    assert alertmanager is not None
    assert [host_port(u) for u in alertmanager.urls] == [("alertmanager", ports["alertmanager"])]
    influx = settings.sinks.influxdb
    assert influx is not None
    assert host_port(influx.url) == ("influxdb", ports["influxdb"])
    init = services["influxdb"]["environment"]
    assert (influx.org, influx.bucket) == (
        init["DOCKER_INFLUXDB_INIT_ORG"],
        init["DOCKER_INFLUXDB_INIT_BUCKET"],
    )
    assert init["DOCKER_INFLUXDB_INIT_MODE"] == "setup"


def test_prometheus_scrapes_simwatch_and_alerts_to_the_stack() -> None:
    services = compose()["services"]
    ports = listens(services)
    prometheus = services["prometheus"]
    config_path = command_flag(prometheus, "--config.file")
    mounted = binds(prometheus)
    assert mounted[config_path] == DEPLOY / "prometheus" / "prometheus.yml"
    config = yaml.safe_load(mounted[config_path].read_text(encoding="utf-8"))
    # rule files are named relative to prometheus.yml: each is mounted next to it
    for rule_file in config["rule_files"]:
        in_container = str(PurePosixPath(config_path).parent / rule_file)
        assert in_container in mounted, rule_file
        assert mounted[in_container] == DEPLOY / "prometheus" / rule_file
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = [t for c in jobs["simwatch"]["static_configs"] for t in c["targets"]]
    assert targets == [f"simwatch:{ports['simwatch']}"]
    for job in jobs.values():
        for static in job["static_configs"]:
            for target in static["targets"]:
                host, port = host_port(target)
                expected = ports["prometheus"] if host == "localhost" else ports.get(host)
                assert port == expected, f"{job['job_name']}: {target}"
    alerting = [
        host_port(t)
        for am in config["alerting"]["alertmanagers"]
        for c in am["static_configs"]
        for t in c["targets"]
    ]
    assert alerting == [("alertmanager", ports["alertmanager"])]
    assert command_flag(prometheus, "--storage.tsdb.path") in {t for _, t, _ in mounts(prometheus)}


def test_alertmanager_runs_the_mounted_config() -> None:
    alertmanager = compose()["services"]["alertmanager"]
    config_path = command_flag(alertmanager, "--config.file")
    assert binds(alertmanager)[config_path] == DEPLOY / "alertmanager" / "alertmanager.yml"
    storage = command_flag(alertmanager, "--storage.path")
    assert storage in {t for _, t, _ in mounts(alertmanager)}


def test_grafana_is_provisioned_with_the_stack_datasources_and_dashboards() -> None:
    services = compose()["services"]
    ports = listens(services)
    grafana = services["grafana"]
    mounted = binds(grafana)
    assert mounted["/etc/grafana/provisioning"] == REPO / "grafana" / "provisioning"
    provisioning = mounted["/etc/grafana/provisioning"]
    sources = yaml.safe_load(
        (provisioning / "datasources" / "simwatch.yml").read_text(encoding="utf-8")
    )["datasources"]
    by_uid = {s["uid"]: s for s in sources}
    assert {"prometheus", "influxdb"} <= set(by_uid)
    for source in sources:
        host, port = host_port(source["url"])
        assert port == ports[host], source["name"]
    influx = by_uid["influxdb"]["jsonData"]
    init = services["influxdb"]["environment"]
    assert influx["organization"] == init["DOCKER_INFLUXDB_INIT_ORG"]
    assert influx["defaultBucket"] == init["DOCKER_INFLUXDB_INIT_BUCKET"]
    # every ${VAR} the provisioning files use is in Grafana's environment
    for path in provisioning.rglob("*.y*ml"):
        for name in VARIABLE.findall(path.read_text(encoding="utf-8")):
            assert name in grafana["environment"], f"{path.name}: ${{{name}}}"
    # the dashboards folder is mounted where the dashboard provider reads
    providers = yaml.safe_load(
        (provisioning / "dashboards" / "simwatch.yml").read_text(encoding="utf-8")
    )["providers"]
    (provider_path,) = [p["options"]["path"] for p in providers]
    assert mounted[provider_path] == REPO / "grafana" / "dashboards"
    assert list(mounted[provider_path].glob("*.json"))


@pytest.fixture
def stack_mosquitto(tmp_path: Path) -> Iterator[int]:
    """Mosquitto running the stack's mosquitto.conf, moved to a free loopback port."""
    if not mosquitto.available():
        pytest.skip("mosquitto is not installed")
    server = mosquitto.Mosquitto(tmp_path)  # its start and stop; the stack's config
    conf = MOSQUITTO_CONF.read_text(encoding="utf-8")
    conf = conf.replace(f"listener {mosquitto_listener()}\n", f"listener {server.port} 127.0.0.1\n")
    conf = conf.replace("/mosquitto/data/", f"{tmp_path}/")
    conf = conf.replace("log_dest stdout", f"log_dest file {server.log_file}")
    if os.geteuid() == 0:
        conf += "user root\n"
    server.config.write_text(conf)
    with server:
        yield server.port


@pytest.mark.real_server
@pytest.mark.skipif(shutil.which("mosquitto_sub") is None, reason="mosquitto_sub missing")
def test_mosquitto_config_runs_and_its_healthcheck_passes(stack_mosquitto: int) -> None:
    test = compose()["services"]["mosquitto"]["healthcheck"]["test"]
    argv = [interpolate(a, {}) for a in test[1:]]
    assert "$SYS/broker/version" in argv
    argv[argv.index("-p") + 1] = str(stack_mosquitto)
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("mosquitto version 2.")
