"""docker-compose.yml and the Dockerfile describe a deployment that can actually start."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"

HPSEARCH_SERVICES = ("api", "dashboard", "worker")
SECRETS = ("POSTGRES_PASSWORD",)
FAKE_ENV = {"POSTGRES_PASSWORD": "pw-from-env"}
_SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|KEY")
_REQUIRED = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:\?[^}]+\}")

# ${NAME}, ${NAME:?err}, ${NAME?err}, ${NAME:-default}, ${NAME-default}, ${NAME:+alt}; `$$`
# is a literal dollar.
_INTERPOLATION = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
)


class MissingVariable(Exception):
    pass


def interpolate(text: str, env: dict[str, str]) -> str:
    """Substitute variables the way `docker compose` does (the subset the file may use)."""

    def replace(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group("name"), m.group("op"), m.group("arg")
        value = env.get(name)
        unset_or_empty = not value if op and op.startswith(":") else value is None
        if op in ("?", ":?"):
            if unset_or_empty:
                raise MissingVariable(f"{name}: {arg}")
            return value or ""
        if op in ("-", ":-"):
            return arg if unset_or_empty else (value or "")
        if op in ("+", ":+"):
            return "" if unset_or_empty else arg
        return value or ""

    return _INTERPOLATION.sub(replace, text)


def load_compose(env: dict[str, str] = FAKE_ENV) -> dict[str, Any]:
    return yaml.safe_load(interpolate(COMPOSE.read_text(), env))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


def command_of(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def option_value(argv: list[str], option: str) -> str:
    for i, token in enumerate(argv):
        if token == option:
            return argv[i + 1]
        if token.startswith(option + "="):
            return token.split("=", 1)[1]
    raise AssertionError(f"{option} not in {shlex.join(argv)}")


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: str(v) for k, v in env.items()}


def test_the_five_services_exist(compose: dict[str, Any]) -> None:
    assert {"postgres", "pgbouncer", *HPSEARCH_SERVICES} <= set(compose["services"])
    assert compose["services"]["postgres"]["image"].startswith("postgres:16")


def _storage_url_of(service: dict[str, Any]) -> str:
    """The one URL a service's command and $HPSEARCH_STORAGE both name."""
    url = option_value(command_of(service), "--storage")
    assert environment_of(service).get("HPSEARCH_STORAGE", url) == url, service["command"]
    return url


def test_every_service_uses_the_one_postgres_database(compose: dict[str, Any]) -> None:
    # The API and the dashboard go to PostgreSQL itself; the workers through PgBouncer, which
    # goes to the same database as the same user.
    services = compose["services"]
    db_env = environment_of(services["postgres"])
    bouncer = environment_of(services["pgbouncer"])
    direct = {_storage_url_of(services[name]) for name in ("api", "dashboard")}
    assert len(direct) == 1, direct
    url = make_url(direct.pop())
    assert url.drivername == "postgresql+psycopg"
    assert url.host == "postgres" and (url.port or 5432) == 5432
    assert url.database == db_env.get("POSTGRES_DB", db_env.get("POSTGRES_USER", "postgres"))
    assert url.username == db_env.get("POSTGRES_USER", "postgres")
    assert url.password == db_env["POSTGRES_PASSWORD"] == FAKE_ENV["POSTGRES_PASSWORD"]

    pooled = make_url(_storage_url_of(services["worker"]))
    assert pooled.drivername == url.drivername
    assert (pooled.host, pooled.port) == ("pgbouncer", int(bouncer["LISTEN_PORT"]))
    assert pooled.query.get("pgbouncer") == "true"  # hpsearch keeps no session state then
    assert (pooled.database, pooled.username, pooled.password) == (
        url.database,
        url.username,
        url.password,
    )
    assert (bouncer["DB_HOST"], int(bouncer["DB_PORT"])) == ("postgres", 5432)
    assert (bouncer["DB_NAME"], bouncer["DB_USER"], bouncer["DB_PASSWORD"]) == (
        url.database,
        url.username,
        url.password,
    )


def test_pgbouncer_pools_transactions_for_many_workers(compose: dict[str, Any]) -> None:
    bouncer = compose["services"]["pgbouncer"]
    env = environment_of(bouncer)
    assert env["POOL_MODE"] == "transaction"
    assert int(env["DEFAULT_POOL_SIZE"]) <= 10 < 1000 <= int(env["MAX_CLIENT_CONN"])
    # PostgreSQL 16 keeps SCRAM verifiers: PgBouncer needs the plain password to log in with it.
    assert env["AUTH_TYPE"] == "scram-sha-256"
    assert bouncer["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert compose["services"]["worker"]["depends_on"]["pgbouncer"]["condition"] in (
        "service_started",
        "service_healthy",
    )


def test_the_database_is_healthchecked_and_waited_for(compose: dict[str, Any]) -> None:
    services = compose["services"]
    check = services["postgres"]["healthcheck"]["test"]
    assert "pg_isready" in (check if isinstance(check, str) else " ".join(check))
    for name in HPSEARCH_SERVICES:
        depends_on = services[name].get("depends_on")
        assert isinstance(depends_on, dict), f"{name}: depends_on must name a condition"
        assert depends_on["postgres"]["condition"] == "service_healthy", name


def test_the_database_keeps_its_data_in_a_named_volume(compose: dict[str, Any]) -> None:
    volumes = compose["services"]["postgres"]["volumes"]
    sources = [(v.split(":")[0] if isinstance(v, str) else v["source"]) for v in volumes]
    assert any(source in (compose.get("volumes") or {}) for source in sources), volumes


def test_the_worker_reserves_the_gpus(compose: dict[str, Any]) -> None:
    devices = compose["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(
        "gpu" in d.get("capabilities", [])
        and d.get("driver") == "nvidia"
        and d.get("count") == "all"
        for d in devices
    ), devices


def test_anonymous_reads_are_off_unless_the_environment_turns_them_on() -> None:
    from hpsearch.service import Settings

    default = environment_of(load_compose()["services"]["api"])["HPSEARCH_ANONYMOUS_READS"]
    assert Settings(anonymous_reads=default).anonymous_reads is False
    env = {**FAKE_ENV, "HPSEARCH_ANONYMOUS_READS": "true"}
    turned_on = environment_of(load_compose(env)["services"]["api"])["HPSEARCH_ANONYMOUS_READS"]
    assert Settings(anonymous_reads=turned_on).anonymous_reads is True


def test_no_service_gets_a_shared_api_secret(compose: dict[str, Any]) -> None:
    # API tokens live hashed in the database (`hpsearch token create`), not in the environment.
    for name, service in compose["services"].items():
        assert "HPSEARCH_API_TOKEN" not in environment_of(service), name


@pytest.mark.parametrize("secret", SECRETS)
@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_compose_refuses_to_start_without_each_secret(secret: str, value: str | None) -> None:
    env = {k: v for k, v in FAKE_ENV.items() if k != secret}
    if value is not None:
        env[secret] = value
    with pytest.raises(MissingVariable, match=secret):
        load_compose(env)


def test_no_secret_has_a_default() -> None:
    text = COMPOSE.read_text()
    for m in _INTERPOLATION.finditer(text):
        name = m.group("name")
        if name and re.search(r"PASSWORD|TOKEN|SECRET|KEY", name):
            assert m.group("op") == ":?", f"{m.group(0)}: a secret must use ${{{name}:?...}}"
    for secret in SECRETS:
        assert f"${{{secret}:?" in text, f"{secret} is never required"
    assert "POSTGRES_HOST_AUTH_METHOD" not in text
    # Before interpolation: every secret-named variable and every password in a database URL
    # is exactly a required ${NAME:?...}, never a literal value written into the file.
    raw = yaml.safe_load(text)
    for name, service in raw["services"].items():
        for key, value in environment_of(service).items():
            if _SECRET_NAME.search(key):
                assert _REQUIRED.fullmatch(value), f"{name}: {key}={value!r} is not required"
    urls = [value for value in _strings(raw) if value.startswith("postgresql")]
    assert urls, "no database URL in the compose file"
    for url in urls:
        password = re.match(r"[^:]+://[^:@/]+:(.*)@[^@]+$", url)
        assert password and _REQUIRED.fullmatch(password.group(1)), f"{url}: a literal password"


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


@pytest.mark.parametrize("service", HPSEARCH_SERVICES)
def test_each_service_command_is_a_real_cli_invocation(
    compose: dict[str, Any], service: str
) -> None:
    argv = command_of(compose["services"][service])
    assert argv[0] == "hpsearch", argv
    verb = argv[1]
    done = subprocess.run(
        [sys.executable, "-m", "hpsearch", verb, "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"`hpsearch {verb} --help` failed:\n{done.stderr}"
    flags = [token.split("=", 1)[0] for token in argv[2:] if token.startswith("--")]
    assert flags, argv
    for flag in flags:
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", done.stdout), (
            f"{service}: `hpsearch {verb}` has no {flag}:\n{done.stdout}"
        )


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [ln.strip() for ln in text.splitlines()]
    return [
        (ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln else "")
        for ln in lines
        if ln and not ln.startswith("#")
    ]


def test_the_image_installs_the_package() -> None:
    instructions = _dockerfile_instructions()
    assert instructions[0][0] == "FROM" and instructions[0][1].startswith("python:3.11")

    installs = [
        shlex.split(arg)
        for op, arg in instructions
        if op == "RUN" and re.search(r"\bpip install\b", arg)
    ]
    assert any(
        "-e" not in argv and any(t == "." or t.startswith(".[") for t in argv) for argv in installs
    ), f"no `pip install .` in {DOCKERFILE.name}"


def test_the_image_copies_everything_the_install_needs() -> None:
    copied = set()
    for op, arg in _dockerfile_instructions():
        if op in ("COPY", "ADD") and "--from" not in arg:
            *sources, _dest = shlex.split(arg)
            sources = [s for s in sources if not s.startswith("--")]
            for source in sources:
                assert (REPO / source).exists(), f"{DOCKERFILE.name} copies missing {source}"
            copied.update(Path(s).parts[0] if s not in (".", "./") else "." for s in sources)

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    needed = {"pyproject.toml"}
    if isinstance(project["project"].get("readme"), str):
        needed.add(project["project"]["readme"])
    # The folders pyproject maps into the one import package (hpsearch, service, search_spaces).
    needed |= {Path(folder).parts[0] for folder in project["tool"]["setuptools"]["package-dir"].values()}
    assert "." in copied or needed <= copied, f"not copied into the image: {needed - copied}"
