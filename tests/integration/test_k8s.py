"""deploy/k8s describes a deployment Kubernetes accepts and whose commands and probes work.

The manifests are rendered as `kubectl apply -k deploy/k8s` renders them (with `kustomize` or
`kubectl kustomize` when one is installed; else by loading the files kustomization.yaml lists
and applying its namespace, labels and images, the only transformers it uses), then every
object is validated against the Kubernetes schemas, and every hpsearch command (containers and
exec probes) is parsed by the real CLI parser. The probes are tried on the real servers.
"""

from __future__ import annotations

import configparser
import copy
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml
from sqlalchemy.engine import make_url

from hpsearch.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
#: Oldest and newest Kubernetes minor versions whose schemas kubernetes-validate bundles.
VERSIONS = ("1.25", "1.37")
#: Kinds without a namespace (kustomize's namespace transformer leaves them alone).
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume"}
HPSEARCH_IMAGE = "hpsearch"

Obj = dict[str, Any]


# -- rendering ---------------------------------------------------------------------------------


def _kustomize_command() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build", str(K8S)]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize", str(K8S)]
    return None


def render_by_hand() -> list[Obj]:
    """The objects of kustomization.yaml's resources, with its namespace, labels and images."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    known = {"apiVersion", "kind", "namespace", "labels", "resources", "images"}
    assert set(kustomization) <= known, (
        f"kustomization.yaml uses {set(kustomization) - known}: teach render_by_hand it"
    )
    objects: list[Obj] = []
    for resource in kustomization["resources"]:
        objects += [d for d in yaml.safe_load_all((K8S / resource).read_text()) if d]
    for obj in objects:
        meta = obj.setdefault("metadata", {})
        if "namespace" in kustomization and obj["kind"] not in CLUSTER_SCOPED:
            meta["namespace"] = kustomization["namespace"]
        for entry in kustomization.get("labels", []):
            assert not entry.get("includeSelectors") and not entry.get("includeTemplates")
            meta.setdefault("labels", {}).update(entry["pairs"])
        for container in _containers(obj):
            for image in kustomization.get("images", []):
                name, _, tag = container["image"].partition(":")
                if name == image["name"]:
                    new = image.get("newName", name)
                    container["image"] = f"{new}:{image.get('newTag', tag)}".rstrip(":")
    return objects


def render() -> list[Obj]:
    command = _kustomize_command()
    if command is None:
        return render_by_hand()
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{shlex.join(command)} failed:\n{done.stderr}"
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.fixture(scope="module")
def objects() -> list[Obj]:
    return render()


def _key(obj: Obj) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def one(objects: list[Obj], kind: str, name: str) -> Obj:
    found = [o for o in objects if _key(o) == (kind, name)]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} objects, want 1"
    return found[0]


def _pod_spec(obj: Obj) -> Obj | None:
    if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        spec: Obj = obj["spec"]["template"]["spec"]
        return spec
    return None


def _containers(obj: Obj) -> list[Obj]:
    spec = _pod_spec(obj)
    if spec is None:
        return []
    return [*spec.get("initContainers", []), *spec["containers"]]


def hpsearch_containers(objects: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    for obj in objects:
        for container in _containers(obj):
            if container["image"].partition(":")[0].rsplit("/", 1)[-1] == HPSEARCH_IMAGE:
                yield obj, container


def env_of(container: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in container.get("env", [])}


# -- the objects -------------------------------------------------------------------------------


def test_the_fallback_renders_what_kustomize_renders() -> None:
    command = _kustomize_command()
    if command is None:
        pytest.skip("neither kustomize nor kubectl is installed: the test renders by hand")
    by_tool = sorted(render(), key=_key)
    by_hand = sorted(render_by_hand(), key=_key)
    assert [_key(o) for o in by_hand] == [_key(o) for o in by_tool]
    for mine, theirs in zip(by_hand, by_tool, strict=True):
        assert mine == theirs, _key(mine)


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_is_valid_kubernetes(objects: list[Obj], version: str) -> None:
    problems = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            where = "/".join(str(p) for p in e.path)
            problems.append(f"{obj['kind']}/{obj['metadata']['name']} at {where}: {e.message}")
    assert not problems, "\n".join(problems)


def test_the_components_are_there(objects: list[Obj]) -> None:
    for kind, name in [
        ("Secret", "hpsearch"),
        ("Deployment", "hpsearch-api"),
        ("Service", "hpsearch-api"),
        ("Deployment", "hpsearch-dashboard"),
        ("Service", "hpsearch-dashboard"),
        ("Deployment", "pgbouncer"),
        ("Service", "pgbouncer"),
        ("ConfigMap", "pgbouncer"),
        ("Deployment", "hpsearch-worker"),
        ("StatefulSet", "postgres"),
        ("Service", "postgres"),
    ]:
        one(objects, kind, name)
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {
        "hpsearch"
    }


def test_every_service_selects_pods_on_a_port_they_open(objects: list[Obj]) -> None:
    for service in (o for o in objects if o["kind"] == "Service"):
        selector = service["spec"]["selector"]
        pods = [
            o
            for o in objects
            if _pod_spec(o) is not None
            and selector.items() <= o["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(pods) == 1, f"Service/{service['metadata']['name']} selects {len(pods)}"
        ports = {p.get("name") for c in _containers(pods[0]) for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, (service["metadata"]["name"], port, ports)
        assert pods[0]["spec"]["selector"]["matchLabels"] == selector, service["metadata"]


def test_every_secret_and_config_map_reference_exists(objects: list[Obj]) -> None:
    secrets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Secret"}
    maps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}

    def keys(obj: Obj) -> set[str]:
        return {*obj.get("data", {}), *obj.get("stringData", {})}

    for obj in objects:
        for container in _containers(obj):
            for item in container.get("envFrom", []):
                if "configMapRef" in item:
                    assert item["configMapRef"]["name"] in maps, item
                if "secretRef" in item:
                    assert item["secretRef"]["name"] in secrets, item
            for env in container.get("env", []):
                ref = env.get("valueFrom", {})
                if "secretKeyRef" in ref:
                    name, key = ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"]
                    assert key in keys(secrets[name]), f"{container['name']}: {name}/{key}"
                if "configMapKeyRef" in ref:
                    name, key = ref["configMapKeyRef"]["name"], ref["configMapKeyRef"]["key"]
                    assert key in keys(maps[name]), f"{container['name']}: {name}/{key}"
        for volume in (_pod_spec(obj) or {}).get("volumes", []):
            if "secret" in volume:
                source = secrets[volume["secret"]["secretName"]]
                for item in volume["secret"].get("items", []):
                    assert item["key"] in keys(source), item
            if "configMap" in volume:
                assert volume["configMap"]["name"] in maps, volume


def test_the_secret_holds_no_working_password(objects: list[Obj]) -> None:
    # Nothing works until someone fills it in: PostgreSQL refuses an empty password, PgBouncer
    # lets nobody in, and the URLs name the placeholder PASSWORD.
    data = one(objects, "Secret", "hpsearch")["stringData"]
    assert data["postgres-password"] == "" and data["pgbouncer-userlist"] == ""
    for key in ("database-url", "pooled-database-url"):
        assert make_url(data[key]).password == "PASSWORD", key


def test_each_part_uses_its_database_url(objects: list[Obj]) -> None:
    secret = one(objects, "Secret", "hpsearch")["stringData"]
    postgres = one(objects, "Service", "postgres")["spec"]["ports"][0]["port"]
    pgbouncer = one(objects, "Service", "pgbouncer")["spec"]["ports"][0]["port"]
    expected = {
        "hpsearch-api": ("postgres", postgres, False),
        "hpsearch-dashboard": ("postgres", postgres, False),
        "hpsearch-worker": ("pgbouncer", pgbouncer, True),
    }
    seen = set()
    for obj, container in hpsearch_containers(objects):
        ref = env_of(container)["HPSEARCH_STORAGE"]["valueFrom"]["secretKeyRef"]
        url = make_url(secret[ref["key"]])
        host, port, pooled = expected[obj["metadata"]["name"]]
        assert (url.host, url.port, url.drivername) == (host, port, "postgresql+psycopg")
        assert (url.query.get("pgbouncer") == "true") is pooled, url
        assert url.database == "hpsearch" and url.username == "hpsearch"
        seen.add(obj["metadata"]["name"])
    assert seen == set(expected)


def test_pgbouncer_pools_transactions_in_front_of_postgres(objects: list[Obj]) -> None:
    ini = configparser.ConfigParser(inline_comment_prefixes=None, comment_prefixes=(";", "#"))
    ini.read_string(one(objects, "ConfigMap", "pgbouncer")["data"]["pgbouncer.ini"])
    settings = ini["pgbouncer"]
    assert settings["pool_mode"] == "transaction"
    assert int(settings["default_pool_size"]) <= 10 < 1000 <= int(settings["max_client_conn"])
    database = dict(kv.split("=", 1) for kv in ini["databases"]["hpsearch"].split())
    postgres_port = one(objects, "Service", "postgres")["spec"]["ports"][0]["port"]
    assert (database["host"], int(database["port"])) == ("postgres", postgres_port)

    deployment = one(objects, "Deployment", "pgbouncer")
    (container,) = _containers(deployment)
    assert container["ports"][0]["containerPort"] == int(settings["listen_port"])
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    config = next(a for a in container["command"] if a.endswith(".ini"))
    assert config == f"{mounts['conf']}/pgbouncer.ini"
    (userlist,) = volumes["secret"]["secret"]["items"]
    assert settings["auth_file"] == f"{mounts['secret']}/{userlist['path']}"


def test_the_workers_request_gpus_and_run_one_process_per_gpu(objects: list[Obj]) -> None:
    (container,) = _containers(one(objects, "Deployment", "hpsearch-worker"))
    assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    argv = [*container["command"], *container.get("args", [])]
    args = build_parser().parse_args(argv[1:])
    assert (args.verb, args.gpus, args.wait) == ("worker", "all", True)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert "exec" in container[probe], probe


def test_the_api_probes_are_readyz_and_healthz(objects: list[Obj]) -> None:
    (container,) = _containers(one(objects, "Deployment", "hpsearch-api"))
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


# -- the commands --------------------------------------------------------------------------------


def _shell_commands(script: str) -> list[list[str]]:
    """The simple commands of a one-line shell script (pipes, && and ; between them)."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in ("|", "||", "&&", ";"):
            commands.append([])
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


def hpsearch_invocations(container: Obj) -> Iterator[tuple[str, list[str]]]:
    """Every hpsearch command line of a container: its command, and its exec probes'."""
    yield "command", [*container.get("command", []), *container.get("args", [])]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        argv = container.get(probe, {}).get("exec", {}).get("command")
        if not argv:
            continue
        if argv[:2] in (["sh", "-c"], ["bash", "-c"], ["/bin/sh", "-c"]):
            for command in _shell_commands(argv[2]):
                if command[0] == "hpsearch":
                    yield probe, command
        elif argv[0] == "hpsearch":
            yield probe, argv


def test_every_hpsearch_command_is_a_real_cli_invocation(objects: list[Obj]) -> None:
    parser = build_parser()
    checked = 0
    for obj, container in hpsearch_containers(objects):
        for where, argv in hpsearch_invocations(container):
            name = f"{obj['metadata']['name']} {where}: {shlex.join(argv)}"
            assert argv and argv[0] == "hpsearch", name
            try:
                parser.parse_args(argv[1:])
            except SystemExit:
                pytest.fail(f"{name}: not a command of the hpsearch CLI (see the error above)")
            checked += 1
    assert checked >= 6, checked  # api, dashboard, worker and the worker's three probes


def test_hpsearch_containers_run_as_the_images_user(objects: list[Obj]) -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    uid = int(re.search(r"useradd[^\n]*--uid (\d+)", dockerfile).group(1))  # type: ignore[union-attr]
    for obj, _container in hpsearch_containers(objects):
        context = obj["spec"]["template"]["spec"]["securityContext"]
        assert context["runAsNonRoot"] and context["runAsUser"] == uid, obj["metadata"]["name"]


# -- the probes on the real servers ------------------------------------------------------------


def _http_probes(container: Obj) -> list[Obj]:
    probes = [container.get(p, {}).get("httpGet") for p in ("readinessProbe", "livenessProbe")]
    return [p for p in probes if p]


def _get_as_the_kubelet(base: str, probe: Obj) -> int:
    # The kubelet sends the pod's IP as Host unless the probe names one.
    headers = {"Host": "10.1.2.3", **{h["name"]: h["value"] for h in probe.get("httpHeaders", [])}}
    return httpx.get(base + probe["path"], headers=headers, timeout=10).status_code


def test_the_api_answers_its_probes(objects: list[Obj], live_service: str) -> None:
    (container,) = _containers(one(objects, "Deployment", "hpsearch-api"))
    probes = _http_probes(container)
    assert len(probes) == 2
    for probe in probes:
        assert _get_as_the_kubelet(live_service, probe) == 200, probe["path"]
    # The API refuses the pod's IP as Host (DNS rebinding): the probes must name localhost.
    bare = {k: v for k, v in probes[0].items() if k != "httpHeaders"}
    assert _get_as_the_kubelet(live_service, bare) == 400


def test_the_dashboard_answers_its_probes(
    objects: list[Obj], sqlite_url: str, free_port: int
) -> None:
    from hpsearch.service.dashboard import start_dashboard

    (container,) = _containers(one(objects, "Deployment", "hpsearch-dashboard"))
    probes = _http_probes(container)
    assert len(probes) == 2
    server = start_dashboard(sqlite_url, port=free_port)
    try:
        for probe in probes:
            status = _get_as_the_kubelet(f"http://127.0.0.1:{free_port}", probe)
            assert 200 <= status < 400, (probe["path"], status)  # the kubelet's success
    finally:
        server.stop()


def _run_probe(argv: list[str], storage_url: str) -> int:
    venv_bin = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
        "HOSTNAME": socket.gethostname(),  # a pod's name, which the worker records as its host
        "HPSEARCH_STORAGE": storage_url,
    }
    env.pop("HPSEARCH_SERVER", None)
    done = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )
    return done.returncode


def test_the_worker_probe_passes_while_this_pods_worker_beats(
    objects: list[Obj], sqlite_url: str
) -> None:
    from hpsearch.db import fleet
    from hpsearch.db.storage import open_storage

    (container,) = _containers(one(objects, "Deployment", "hpsearch-worker"))
    probe = copy.deepcopy(container["livenessProbe"]["exec"]["command"])
    assert probe == container["readinessProbe"]["exec"]["command"]
    storage = open_storage(sqlite_url)
    fleet.register_worker(storage, "elsewhere:1", device="cuda")  # another pod's worker
    with storage.engine.begin() as conn:
        from hpsearch.db.tables import workers

        conn.execute(workers.update().values(host="another-pod"))
    assert _run_probe(probe, sqlite_url) != 0, "passed with no worker of this pod"

    worker_id = fleet.new_worker_id("cuda")
    fleet.register_worker(storage, worker_id, device="cuda")
    assert _run_probe(probe, sqlite_url) == 0, "failed while this pod's worker beats"

    fleet.retire_worker(storage, worker_id)
    assert _run_probe(probe, sqlite_url) != 0, "passed after this pod's worker stopped"


# -- PgBouncer's configuration, run -------------------------------------------------------------


def _pgbouncer_program() -> str:
    found = shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.access(p, os.X_OK)), None
    )
    if found:
        return found
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail("PgBouncer is required under CI (apt-get install -y pgbouncer)", pytrace=False)
    pytest.skip("no `pgbouncer` program (apt-get install -y pgbouncer)")


@pytest.mark.postgres
def test_pgbouncer_runs_the_config_map_and_lets_in_the_secrets_users(
    objects: list[Obj], fresh_postgres_url: str
) -> None:
    """The ConfigMap's pgbouncer.ini, only its addresses and paths moved here, runs in a real
    PgBouncer; a user of the Secret's pgbouncer-userlist format gets in, a wrong password not,
    and hpsearch opens its study database through it."""
    import psycopg

    from hpsearch.db.storage import open_storage

    program = _pgbouncer_program()
    server = make_url(fresh_postgres_url)
    # Not under pytest's tmp_path: its parents are private to root, whom PgBouncer refuses.
    tmp_path = Path(tempfile.mkdtemp(prefix="hpsearch-k8s-pgbouncer-", dir="/tmp"))
    port = _free_port()
    ini = configparser.ConfigParser(comment_prefixes=(";", "#"), interpolation=None)
    ini.optionxform = str  # type: ignore[assignment,method-assign]
    ini.read_string(one(objects, "ConfigMap", "pgbouncer")["data"]["pgbouncer.ini"])
    target = dict(kv.split("=", 1) for kv in ini["databases"]["hpsearch"].split())
    target |= {"host": "127.0.0.1", "port": str(server.port), "dbname": str(server.database)}
    ini["databases"]["hpsearch"] = " ".join(f"{k}={v}" for k, v in target.items())
    (tmp_path / "userlist.txt").write_text(f'"{server.username}" "s3cret-pw"\n')
    ini["pgbouncer"].update(
        listen_addr="127.0.0.1",
        listen_port=str(port),
        auth_file=str(tmp_path / "userlist.txt"),
        unix_socket_dir="",
    )
    with (tmp_path / "pgbouncer.ini").open("w") as f:
        ini.write(f)
    as_user: dict[str, Any] = {}
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        import pwd

        owner = pwd.getpwnam("postgres")
        for path in (tmp_path, *tmp_path.iterdir()):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        as_user = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
    with (tmp_path / "stderr.txt").open("w") as stderr:
        bouncer = subprocess.Popen(
            [program, str(tmp_path / "pgbouncer.ini")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            **as_user,
        )

    def login(password: str) -> None:
        with psycopg.connect(
            host="127.0.0.1", port=port, user=server.username, password=password,
            dbname="hpsearch", prepare_threshold=None, connect_timeout=5,
        ) as conn:  # fmt: skip
            conn.execute("SELECT 1")

    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                login("s3cret-pw")
                break
            except psycopg.OperationalError:
                if bouncer.poll() is not None or time.monotonic() > deadline:
                    log = (tmp_path / "stderr.txt").read_text(errors="replace")
                    pytest.fail(
                        f"pgbouncer did not take the ConfigMap's ini (exit {bouncer.poll()}):\n"
                        + log
                    )
                time.sleep(0.1)
        with pytest.raises(psycopg.OperationalError, match="authentication failed"):
            login("wrong")
        pooled = f"postgresql+psycopg://{server.username}:s3cret-pw@127.0.0.1:{port}/hpsearch"
        storage = open_storage(pooled + "?pgbouncer=true")
        assert storage.get_all_studies() == []
    finally:
        bouncer.terminate()
        try:
            bouncer.wait(timeout=10)
        except subprocess.TimeoutExpired:
            bouncer.kill()
        shutil.rmtree(tmp_path, ignore_errors=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
