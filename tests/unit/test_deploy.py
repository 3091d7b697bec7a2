"""The deploy kit holds together: docker-compose.yml is valid Compose, the proxy's config names
the compose's replicas, every variable either file refers to is documented in .env.example, and
.env.example lists every setting of reverb/config.py."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft201909Validator

from reverb.config import Settings
from tests.deploy_files import (
    CADDYFILE,
    COMPOSE,
    DOCKERFILE,
    ENV_EXAMPLE,
    ROOT,
    caddy_binary,
    compose,
    docker_instructions,
    healthcheck_command,
)

# Vendored, with its source: tests/data/README.md.
SCHEMA = json.loads((ROOT / "tests" / "data" / "compose_spec.json").read_text())
REPLICAS = ("reverb1", "reverb2")


def schema_errors(document: dict[str, Any]) -> list[str]:
    validator = Draft201909Validator(SCHEMA)
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(document)]


def env_example_names() -> set[str]:
    """Every variable .env.example shows, set or commented out (`# NAME=default`)."""
    return set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.MULTILINE))


def test_the_schema_is_a_valid_json_schema() -> None:
    Draft201909Validator.check_schema(SCHEMA)


def test_compose_file_validates_against_the_compose_specification() -> None:
    assert schema_errors(compose()) == []


@pytest.mark.parametrize(
    ("where", "key", "value"),
    [
        ("service", "restart_policy", "always"),  # a key Compose does not know
        ("service", "depends_on", {"migrate": {"condition": "done"}}),  # an unknown condition
        ("top", "volume", {}),  # a misspelt top-level key
    ],
)
def test_the_schema_refuses_what_compose_would(where: str, key: str, value: object) -> None:
    broken = copy.deepcopy(compose())
    target = broken["services"]["reverb1"] if where == "service" else broken
    target[key] = value
    assert schema_errors(broken) != []


def test_the_replicas_start_after_the_migration_on_production_settings() -> None:
    services = compose()["services"]
    assert services["migrate"]["command"] == ["reverb", "migrate"]
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert "healthcheck" in services["postgres"]
    for name in REPLICAS:
        replica = services[name]
        assert replica["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert replica["environment"]["REVERB_ENV"] == "production"
        assert replica["environment"]["JWT_SECRET"].startswith("${JWT_SECRET:?")
        assert replica["environment"]["DATABASE_URL"].endswith("@postgres:5432/reverb")
        assert replica["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        assert "ports" not in replica  # reached through the proxy only
    # One media volume for all replicas (and it is the directory they write to).
    mounts = {tuple(services[n]["volumes"]) for n in REPLICAS}
    assert mounts == {("media:/var/lib/reverb/media",)}
    assert services["reverb1"]["environment"]["MEDIA_DIR"] == "/var/lib/reverb/media"


def test_every_named_volume_is_declared_and_used() -> None:
    doc = compose()
    used = {
        mount.split(":", 1)[0]
        for service in doc["services"].values()
        for mount in service.get("volumes", [])
        if not mount.startswith((".", "/"))
    }
    assert used == set(doc["volumes"]) == {"pgdata", "media", "caddy_data", "caddy_config"}


def test_the_proxy_names_every_replica_and_nothing_else() -> None:
    services = compose()["services"]
    upstreams = services["caddy"]["environment"]["REVERB_UPSTREAMS"].split()
    assert [u.rsplit(":", 1)[0] for u in upstreams] == list(REPLICAS)
    assert all(u.endswith(":5000") for u in upstreams)  # the image's EXPOSE and default PORT
    replicas = [n for n, s in services.items() if s.get("command") is None and "build" in s]
    assert replicas == list(REPLICAS)
    mount = "./deploy/Caddyfile:/etc/caddy/Caddyfile:ro"
    assert mount in services["caddy"]["volumes"]
    assert (ROOT / "deploy" / "Caddyfile") == CADDYFILE


def test_every_caddyfile_placeholder_is_given_by_the_compose_or_has_a_default() -> None:
    placeholders = re.findall(r"\{\$([A-Z0-9_]+)(:[^}]*)?\}", CADDYFILE.read_text())
    assert placeholders
    given = set(compose()["services"]["caddy"]["environment"])
    missing = [name for name, default in placeholders if name not in given and not default]
    assert missing == []


def test_every_variable_the_compose_file_reads_is_in_env_example() -> None:
    referenced = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE.read_text()))
    assert {"JWT_SECRET", "POSTGRES_PASSWORD", "REVERB_DOMAIN"} <= referenced
    assert referenced - env_example_names() == set()


def test_env_example_lists_every_setting_and_only_known_names() -> None:
    settings = {name.upper() for name in Settings.model_fields}
    compose_only = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE.read_text()))
    names = env_example_names()
    assert settings - names == set(), "settings missing from .env.example"
    assert names - settings - compose_only == set(), "names .env.example has but nothing reads"


@pytest.mark.parametrize("name", sorted(n.upper() for n in Settings.model_fields))
def test_env_example_shows_each_settings_default(name: str) -> None:
    field = Settings.model_fields[name.lower()]
    default = field.get_default(call_default_factory=True)
    if name == "JWT_SECRET" or default is None:
        return  # no default to show: generated, or unset
    shown = re.search(rf"^#? ?{name}=(.*)$", ENV_EXAMPLE.read_text(), re.MULTILINE)
    assert shown is not None
    value = shown.group(1)
    if isinstance(default, bool):
        assert value == str(default).lower()
    elif isinstance(default, float):
        assert float(value) == default
    elif isinstance(default, list):
        # Comma-separated lists (CORS_ORIGINS), or JSON for lists of objects (OAUTH_PROVIDERS).
        assert value in (",".join(default), json.dumps(default))
    else:
        assert value == str(default) or Path(value) == default


def caddy_adapt(env: dict[str, str]) -> dict[str, Any]:
    """deploy/Caddyfile as the real Caddy reads it with `env`, in Caddy's JSON form."""
    result = subprocess.run(
        [caddy_binary(), "adapt", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    adapted: dict[str, Any] = json.loads(result.stdout)
    return adapted


def proxy_handler(config: dict[str, Any]) -> dict[str, Any]:
    text = json.dumps(config)
    found = re.search(r'\{"handler": "reverse_proxy".*?"upstreams": \[[^\]]*\]\}', text)
    assert found is not None, text
    handler: dict[str, Any] = json.loads(found.group(0))
    return handler


def test_caddy_reads_the_caddyfile_with_the_compose_environment() -> None:
    env = {k: v for k, v in compose()["services"]["caddy"]["environment"].items()}
    env["REVERB_DOMAIN"] = ":80"  # what ${REVERB_DOMAIN:-:80} gives when it is unset
    config = caddy_adapt(env)
    server = config["apps"]["http"]["servers"]["srv0"]
    assert server["listen"] == [":80"]
    handler = proxy_handler(config)
    assert [u["dial"] for u in handler["upstreams"]] == ["reverb1:5000", "reverb2:5000"]
    assert handler["health_checks"]["active"]["uri"] == "/healthz"


def test_a_domain_turns_on_automatic_https() -> None:
    env = dict(compose()["services"]["caddy"]["environment"], REVERB_DOMAIN="chat.example.com")
    server = caddy_adapt(env)["apps"]["http"]["servers"]["srv0"]
    assert server["listen"] == [":443"]  # HTTPS with a managed certificate (and :80 redirects)
    assert server["routes"][0]["match"] == [{"host": ["chat.example.com"]}]


def test_dockerfile_is_multi_stage_non_root_with_a_health_check() -> None:
    instructions = docker_instructions()
    stages = [i.value for i in instructions if i.cmd == "FROM"]
    assert stages == [("python:3.11-slim", "AS", "build"), ("python:3.11-slim",)]
    last_from = max(n for n, i in enumerate(instructions) if i.cmd == "FROM")
    build, final = instructions[:last_from], instructions[last_from:]
    # The tests' install (`pip install .`), without the dev extras, in the build stage only.
    runs = [i.value[0] for i in build if i.cmd == "RUN"]
    assert "/opt/reverb/bin/pip install ." in runs
    assert not [i for i in final if i.cmd == "RUN" and "pip install" in i.value[0]]
    assert [(i.flags, i.value) for i in final if i.cmd == "COPY"] == [
        (("--from=build",), ("/opt/reverb", "/opt/reverb"))
    ]
    [user] = [i.value[0] for i in final if i.cmd == "USER"]
    assert all(int(part) > 0 for part in user.split(":")), user  # numeric, not root
    assert [i.value for i in final if i.cmd == "EXPOSE"] == [("5000",)]
    [cmd] = [i for i in final if i.cmd == "CMD"]
    assert cmd.json and cmd.value == ("reverb", "serve", "--host", "0.0.0.0")
    assert "/healthz" in healthcheck_command()[-1]


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    result = subprocess.run(
        [str(hadolint), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, ""), result.stdout + result.stderr
