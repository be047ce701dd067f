"""Static checks of the deployment files: docker-compose.yml, deploy/Dockerfile, deploy/otel-collector.yaml, k8s/.

No container engine or cluster is needed: the files are parsed with PyYAML and checked against each other and
against the code they start (deploy.wsgi's entry points, deploy/worker.py, the gateway's body limits).
"""
from __future__ import annotations

import ast
import importlib
import inspect
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

import deploy.wsgi
import shared.storage
from shared.config import DEFAULT_PORTS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
K8S = ROOT / "k8s"
KINDS = ("web", "worker")
EXPECTED_PROCESSES = {(name, kind) for name in deploy.wsgi.SERVICES for kind in KINDS}
# Where every Footprint process finds each service (shared.config.service_url): the gateway proxies to them and
# its /readyz checks them; services call each other and fetch identity's signing keys through them.
SERVICE_URL_ENV = ("IDENTITY_URL", "RECORDS_URL", "INTAKE_URL", "CERTIFICATION_URL", "SCHEDULING_URL", "EXCHANGE_URL")
REQUIRED_ENV = ("BUS_URL", "DOCUMENTS_URL", *SERVICE_URL_ENV, "OTEL_EXPORTER_OTLP_ENDPOINT")
# Services that keep files in the media store: records (counselling attachments), intake (uploads) and the
# exchange (package bodies and receipts).
MEDIA_SERVICES = ("records", "intake", "exchange")
# The web Deployments the HorizontalPodAutoscalers size: (minReplicas, maxReplicas).
AUTOSCALED = {"gateway": (2, 10), "intake": (2, 20), "intake-worker": (2, 8)}
PART_OF = "app.kubernetes.io/part-of"
NAME = "app.kubernetes.io/name"
COMPONENT = "app.kubernetes.io/component"


# ---- helpers ---------------------------------------------------------------------------------------------

def argv(command) -> list[str]:
    if command is None:
        return []
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def wsgi_entry(command) -> tuple[str, list] | None:
    """The deploy.wsgi factory a gunicorn command names and its literal arguments (gunicorn evaluates them the
    same way): ('app', ['records']) for 'deploy.wsgi:app("records")', ('identity', []) for
    'deploy.wsgi:identity()'; None if there is no such argument or it is not a call with literal arguments."""
    for arg in argv(command):
        if arg.startswith("deploy.wsgi:"):
            try:
                call = ast.parse(arg.split(":", 1)[1], mode="eval").body
            except SyntaxError:
                return None
            if (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and not call.keywords
                    and all(isinstance(a, ast.Constant) for a in call.args)):
                return call.func.id, [a.value for a in call.args]
            return None
    return None


def classify(command) -> tuple[str, str | None]:
    """('web', service) for gunicorn 'deploy.wsgi:app("<service>")' or a shortcut 'deploy.wsgi:<service>()',
    ('worker', service) for 'python -m deploy.worker <service>', otherwise ('other', None).
    A web command whose factory call is neither form gives ('web', None)."""
    args = argv(command)
    if any(Path(arg).name == "gunicorn" for arg in args[:1]) or args[:3] == ["python", "-m", "gunicorn"]:
        entry = wsgi_entry(args)
        if entry is None:
            return "other", None
        func, params = entry
        if func == "app":
            return "web", params[0] if len(params) == 1 and isinstance(params[0], str) else None
        return "web", None if params else func
    for i, arg in enumerate(args[:-2]):
        if arg == "-m" and args[i + 1] == "deploy.worker":
            return "worker", args[i + 2]
    return "other", None


def check_web_entry_point(label: str, command) -> None:
    """The factory exists, accepts the arguments, and serves the service classify() reads from the command:
    called with deploy.wsgi.app stubbed, it must ask for that service, and that service must be in SERVICES."""
    kind, target = classify(command)
    assert kind == "web", f"{label}: not a gunicorn 'deploy.wsgi:...' command: {command}"
    func, params = wsgi_entry(command)
    factory = getattr(deploy.wsgi, func, None)
    assert callable(factory), f"{label}: deploy.wsgi has no {func}()"
    try:
        inspect.signature(factory).bind(*params)
    except TypeError as exc:
        raise AssertionError(f"{label}: deploy.wsgi.{func}{tuple(params)} does not fit its signature: {exc}") from None
    assert target in deploy.wsgi.SERVICES, f"{label}: {target!r} is not in deploy.wsgi.SERVICES"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(deploy.wsgi, "app", lambda name: ("app", name))
        served = getattr(deploy.wsgi, func)(*params)
    assert served == ("app", target), f"{label}: deploy.wsgi.{func}() serves {served!r}, not {target!r}"


def quantity_bytes(value) -> int:
    """A Kubernetes memory quantity (512Mi, 1Gi, 1536Mi, 1G, 1000000) in bytes."""
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti|k|M|G|T)?", str(value).strip())
    assert match, f"unreadable quantity {value!r}"
    units = {None: 1, "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "k": 10 ** 3, "M": 10 ** 6,
             "G": 10 ** 9, "T": 10 ** 12}
    return int(match.group(1)) * units[match.group(2)]


def python_code(command) -> str | None:
    args = argv(command)
    if len(args) >= 3 and Path(args[0]).name.startswith("python") and args[1] == "-c":
        return args[2]
    return None


def healthcheck_code(test) -> str | None:
    """The Python source of a compose/k8s check written as ["CMD", "python", "-c", "..."] or [python, -c, ...]."""
    args = argv(test)
    if args[:1] in (["CMD"], ["CMD-SHELL"]):
        args = args[1:]
    return python_code(args)


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def port_of(bind: str) -> int:
    return int(bind.rsplit(":", 1)[1])


def size_bytes(value: str) -> int:
    match = re.fullmatch(r"(\d+)([kKmMgG]?)", value.strip())
    assert match, f"unreadable size {value!r}"
    return int(match.group(1)) * {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}[match.group(2).lower()]


# ---- docker compose --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and isinstance(data.get("services"), dict) and data["services"]
    return data


@pytest.fixture(scope="module")
def footprint_services(compose) -> dict[str, dict]:
    """Services running Footprint code: built here, tagged footprint, or starting a deploy.* entry point. The
    central database sandbox runs from the same image but stands in for the ministry's system: not one of them."""
    found = {}
    for name, service in compose["services"].items():
        if "deploy.central_sandbox" in argv(service.get("command")):
            continue
        image = str(service.get("image", ""))
        if "build" in service or image.split(":")[0] == "footprint" or "deploy." in " ".join(argv(service.get("command"))):
            found[name] = service
    assert found, "no Footprint services in docker-compose.yml"
    return found


def compose_processes(footprint_services) -> dict[tuple[str, str], str]:
    processes = {}
    for name, service in footprint_services.items():
        kind, target = classify(service.get("command"))
        if kind != "other":
            assert (target, kind) not in processes, f"{name} duplicates {processes.get((target, kind))}"
            processes[(target, kind)] = name
    return processes


def test_compose_services_reference_known_services(compose):
    names = set(compose["services"])
    for name, service in compose["services"].items():
        depends = service.get("depends_on") or {}
        for dependency in (depends if isinstance(depends, (list, dict)) else []):
            assert dependency in names, f"{name} depends on unknown service {dependency}"
    declared_volumes = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source and not source.startswith((".", "/", "~")):
                assert source in declared_volumes, f"{name} mounts undeclared named volume {source}"


def test_every_footprint_service_builds_the_one_dockerfile(footprint_services):
    for name, service in footprint_services.items():
        build = service.get("build")
        assert isinstance(build, dict), f"{name}: build must name the Dockerfile"
        context = ROOT / build.get("context", ".")
        assert (context / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE.resolve(), name


def test_every_footprint_service_has_the_required_environment(footprint_services):
    for name, service in footprint_services.items():
        env = env_of(service)
        for key in REQUIRED_ENV:
            assert env.get(key), f"{name} lacks {key}"
        # Real MongoDB: the relay and consumers belong to the worker processes, never to the web processes.
        assert env.get("FOOTPRINT_INPROC_WORKERS", "").lower() in ("false", "0", "no", "off"), name
        assert env["BUS_URL"].startswith("amqp://"), name
        assert env["DOCUMENTS_URL"].startswith("mongodb://"), name
        assert "w=majority" in env["DOCUMENTS_URL"] and "journal=true" in env["DOCUMENTS_URL"], name


def test_compose_commands_start_entry_points_that_exist(footprint_services):
    import deploy.worker

    assert (ROOT / "deploy" / "worker.py").is_file()
    assert callable(deploy.worker.main)
    for name, service in footprint_services.items():
        command = service.get("command")
        assert command, f"{name}: give the command explicitly"
        kind, target = classify(command)
        if kind == "web":
            check_web_entry_point(name, command)
        elif kind == "worker":
            assert target in deploy.wsgi.SERVICES, f"{name}: deploy.worker cannot run {target!r}"
        else:
            # A one-shot job: Python code whose deploy.wsgi imports and boot() targets exist.
            code = python_code(command)
            assert code, f"{name}: neither a web, a worker nor a python -c job: {command}"
            assert service.get("restart") == "no", f"{name}: a one-shot job must not restart"
            tree = ast.parse(code)
            imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                        and node.module == "deploy.wsgi" for alias in node.names]
            assert imported, f"{name}: the job does not use deploy.wsgi"
            for attribute in imported:
                assert hasattr(deploy.wsgi, attribute), f"{name}: deploy.wsgi has no {attribute}"
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "boot":
                    assert isinstance(node.args[0], ast.Constant) and node.args[0].value in deploy.wsgi.SERVICES, name


def test_compose_web_processes_bind_their_port_and_check_readyz(footprint_services):
    for (target, kind), name in compose_processes(footprint_services).items():
        if kind != "web":
            continue
        service = footprint_services[name]
        bind = env_of(service).get("BIND", "")
        assert bind.startswith("0.0.0.0:"), f"{name} must listen on all interfaces, not {bind!r}"
        check = " ".join(argv(service["healthcheck"]["test"]))
        assert f":{port_of(bind)}/readyz" in check, f"{name}'s healthcheck must hit /readyz on its BIND port"
        compile(healthcheck_code(service["healthcheck"]["test"]), name, "exec")


def test_service_urls_name_every_service_but_the_gateway():
    from gateway import routes

    assert set(SERVICE_URL_ENV) == {f"{name.upper()}_URL" for name in deploy.wsgi.SERVICES if name != "gateway"}
    assert {f"{name.upper()}_URL" for name in routes.routed_services()} <= set(SERVICE_URL_ENV)


@pytest.mark.parametrize("variable", SERVICE_URL_ENV)
def test_each_service_url_reaches_that_services_web_process(footprint_services, variable):
    service = variable.removesuffix("_URL").lower()
    web = compose_processes(footprint_services)[(service, "web")]
    port = port_of(env_of(footprint_services[web])["BIND"])
    assert port == DEFAULT_PORTS[service], f"{web} listens on {port}, not {service}'s port {DEFAULT_PORTS[service]}"
    for name, service_def in footprint_services.items():
        url = urlsplit(env_of(service_def)[variable])
        assert (url.scheme, url.hostname, url.port) == ("http", web, port), f"{name}: {variable}"


def test_only_the_gateway_is_published(compose, footprint_services):
    processes = compose_processes(footprint_services)
    gateway = footprint_services[processes[("gateway", "web")]]
    assert any(str(port).split(":")[-1] == str(port_of(env_of(gateway)["BIND"])) for port in gateway.get("ports", []))
    for (target, kind), name in processes.items():
        if target != "gateway":
            assert not footprint_services[name].get("ports"), f"{name} is reached through the gateway"


def test_the_gateway_starts_after_every_web_process_is_healthy(footprint_services):
    """Its /readyz checks every service it routes to: started earlier, it would only be unready."""
    processes = compose_processes(footprint_services)
    depends = footprint_services[processes[("gateway", "web")]].get("depends_on") or {}
    assert isinstance(depends, dict), "the gateway must wait for conditions, not only start order"
    for (target, kind), name in processes.items():
        if kind == "web" and target != "gateway":
            assert (depends.get(name) or {}).get("condition") == "service_healthy", f"the gateway must wait for {name}"


def test_the_exchange_reaches_the_central_database_sandbox(compose, footprint_services, tmp_path):
    """Compose runs the sandbox and points the exchange at it unless CENTRAL_URL names the real one; a ProcessSet
    (make services, system tests) starts it as a process of its own unless CENTRAL_URL is given."""
    [(name, sandbox)] = [(n, s) for n, s in compose["services"].items()
                         if "deploy.central_sandbox" in argv(s.get("command"))]
    command = argv(sandbox["command"])
    port = command[command.index("--port") + 1]
    for process in ("exchange", "exchange-worker"):
        assert f"http://{name}:{port}" in env_of(footprint_services[process])["CENTRAL_URL"], process
    assert footprint_services["exchange-worker"]["depends_on"][name]["condition"] == "service_healthy"
    from deploy.services import ProcessSet

    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("CENTRAL_URL", raising=False)
        patch.setenv("DOCUMENTS_URL", "mongodb://127.0.0.1:1/")  # not started: only the plan is looked at
        planned = ProcessSet(var_dir=str(tmp_path), ports={"central": 18190})
        assert planned.central is not None and planned.env["CENTRAL_URL"] == "http://127.0.0.1:18190"
        given = ProcessSet(var_dir=str(tmp_path), env={"CENTRAL_URL": "https://central.example"})
        assert given.central is None and given.env["CENTRAL_URL"] == "https://central.example"


def test_media_services_get_the_s3_media_url(compose, footprint_services):
    """Records and intake open the media store at boot (web and worker alike): without MEDIA_URL they would
    write to ./var/media inside the container, invisible to every other process."""
    using_media = {name for name, module in deploy.wsgi.SERVICES.items()
                   if getattr(importlib.import_module(module), "media_store", None) is shared.storage.media_store}
    assert set(MEDIA_SERVICES) <= using_media
    job = " ".join(argv(compose["services"]["createbuckets"].get("command")))
    for (target, kind), name in compose_processes(footprint_services).items():
        if target in using_media:
            url = urlsplit(env_of(footprint_services[name]).get("MEDIA_URL", ""))
            assert url.scheme == "s3" and url.hostname and url.port, f"{name}: MEDIA_URL must name the MinIO store"
            assert url.username and url.password, f"{name}: MEDIA_URL carries the MinIO credentials"
            assert f"local/{url.path.strip('/')}" in job, f"{name}: bucket {url.path} is not created"


def test_intake_runs_more_web_workers_for_the_deadline_peak(footprint_services):
    processes = compose_processes(footprint_services)
    intake = env_of(footprint_services[processes[("intake", "web")]])
    assert intake.get("WEB_CONCURRENCY") == "4"
    for (target, kind), name in processes.items():
        if kind == "web" and target != "intake":
            others = int(env_of(footprint_services[name]).get("WEB_CONCURRENCY", "1"))
            assert int(intake["WEB_CONCURRENCY"]) > others, f"intake should outnumber {name}'s web workers"


def test_mongo_is_a_replica_set_matching_documents_url(compose, footprint_services):
    mongo = compose["services"]["mongo"]
    args = argv(mongo["command"])
    assert "--replSet" in args
    replica_set = args[args.index("--replSet") + 1]
    assert "rs.initiate" in " ".join(argv(mongo["healthcheck"]["test"])), "the replica set must be initiated"
    for name, service in footprint_services.items():
        assert f"replicaSet={replica_set}" in env_of(service)["DOCUMENTS_URL"], name


def test_the_media_bucket_is_created(compose, footprint_services):
    buckets = {urlsplit(env_of(s)["MEDIA_URL"]).path.strip("/") for s in footprint_services.values()}
    assert len(buckets) == 1
    job = " ".join(argv(compose["services"]["createbuckets"].get("command")))
    assert f"mb --ignore-existing local/{buckets.pop()}" in job


def test_depends_on_conditions_are_satisfiable(compose, footprint_services):
    services = compose["services"]
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        if isinstance(depends, list):
            continue
        for dependency, spec in depends.items():
            condition = (spec or {}).get("condition", "service_started")
            target = services[dependency]
            if condition == "service_healthy":
                healthcheck = target.get("healthcheck") or {}
                has_own = bool(healthcheck.get("test")) and not healthcheck.get("disable")
                assert has_own or (dependency in footprint_services and not healthcheck.get("disable")), (
                    f"{name} waits for {dependency} to be healthy, which has no healthcheck")
            elif condition == "service_completed_successfully":
                assert target.get("restart") == "no", f"{dependency} is awaited to complete but restarts"
    long_running = set(compose_processes(footprint_services).values())
    for name in footprint_services:
        depends = services[name].get("depends_on") or {}
        # A primary must exist first (the driver gives up after serverSelectionTimeoutMS); web and worker
        # processes also need the broker.
        for infra in ("mongo", "rabbitmq") if name in long_running else ("mongo",):
            assert depends.get(infra, {}).get("condition") == "service_healthy", f"{name} must wait for {infra}"


def test_identity_processes_share_their_keys(footprint_services):
    """Without keys from the environment identity generates them under FOOTPRINT_VAR_DIR: every identity
    process must see the same directory, or tokens and national-ID ciphertexts would not agree."""
    mounts = set()
    for name, service in footprint_services.items():
        kind, target = classify(service.get("command"))
        code = python_code(service.get("command")) or ""
        if target == "identity" or "'identity'" in code:
            var_dir = env_of(service).get("FOOTPRINT_VAR_DIR", "/app/var")
            volumes = [v for v in service.get("volumes") or [] if isinstance(v, str) and v.split(":")[1] == var_dir]
            assert volumes, f"{name} does not mount a volume at {var_dir}"
            mounts.add(volumes[0].split(":")[0])
            for key in ("JWT_PRIVATE_KEY_FILE", "NATIONAL_ID_KEY", "NATIONAL_ID_HASH_KEY"):
                assert key in env_of(service), f"{name} should pass {key} through"
    assert len(mounts) == 1, f"identity processes use different key volumes: {mounts}"


def test_demo_seed_runs_once_per_seeding_service(footprint_services):
    seeded = [name for name, s in footprint_services.items() if env_of(s).get("FOOTPRINT_SEED_DEMO") == "1"]
    assert seeded, "the compose stack should come with demo accounts"
    targets = []
    for name in seeded:
        kind, target = classify(footprint_services[name].get("command"))
        code = python_code(footprint_services[name]["command"]) or ""
        # identity seeds in its one-shot init job; records seeds in its single worker (it waits for the users)
        assert "'identity'" in code or (target == "records" and kind == "worker"), name
        targets.append("identity" if "'identity'" in code else target)
    assert sorted(targets) == ["identity", "records"]


def test_worker_healthchecks_compile(footprint_services):
    for (target, kind), name in compose_processes(footprint_services).items():
        if kind == "worker":
            code = healthcheck_code(footprint_services[name]["healthcheck"]["test"])
            assert code, f"{name}: the image's HTTP healthcheck does not fit a worker; override it"
            compile(code, name, "exec")


# ---- Kubernetes ------------------------------------------------------------------------------------------

def load_k8s(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


@pytest.fixture(scope="module")
def kustomization() -> dict:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def k8s_objects(kustomization) -> list[dict]:
    objects = []
    for resource in kustomization["resources"]:
        objects.extend(load_k8s(K8S / resource))
    return objects


def of_kind(objects, kind) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


@pytest.fixture(scope="module")
def config_keys(k8s_objects) -> dict[str, dict]:
    return {o["metadata"]["name"]: o["data"] for o in of_kind(k8s_objects, "ConfigMap")}


@pytest.fixture(scope="module")
def secret_keys() -> dict[str, set[str]]:
    secrets = {}
    for doc in load_k8s(K8S / "secret.example.yaml"):
        assert doc["kind"] == "Secret"
        secrets[doc["metadata"]["name"]] = set(doc.get("stringData") or {}) | set(doc.get("data") or {})
    return secrets


def containers(deployment) -> list[dict]:
    return deployment["spec"]["template"]["spec"]["containers"]


def container_ports(deployment) -> tuple[set[int], set[str]]:
    numbers, names = set(), set()
    for container in containers(deployment):
        for port in container.get("ports") or []:
            numbers.add(port["containerPort"])
            if "name" in port:
                names.add(port["name"])
    return numbers, names


def test_kustomization_lists_existing_files_and_keeps_the_example_secret_out(kustomization):
    listed = kustomization["resources"]
    for resource in listed:
        assert (K8S / resource).is_file(), f"kustomization lists missing {resource}"
    assert "secret.example.yaml" not in listed, "applying the kustomization would overwrite the real Secret"
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert on_disk == set(listed), f"k8s files not in the kustomization: {on_disk - set(listed)}"


def test_everything_is_in_the_footprint_namespace(k8s_objects, kustomization):
    assert kustomization.get("namespace") == "footprint"
    assert [o["metadata"]["name"] for o in of_kind(k8s_objects, "Namespace")] == ["footprint"]
    for obj in k8s_objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == "footprint", f"{obj['kind']}/{obj['metadata']['name']}"
            assert obj["metadata"]["labels"][PART_OF] == "footprint", f"{obj['kind']}/{obj['metadata']['name']}"


def test_k8s_processes_equal_compose_processes_and_the_services(k8s_objects, footprint_services):
    k8s = set()
    for deployment in of_kind(k8s_objects, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        command = containers(deployment)[0].get("command")
        kind, target = classify(command)
        assert (labels[NAME], labels[COMPONENT]) == (target, kind), deployment["metadata"]["name"]
        if kind == "web":
            check_web_entry_point(deployment["metadata"]["name"], command)
        else:
            assert kind == "worker" and target in deploy.wsgi.SERVICES, deployment["metadata"]["name"]
        assert (target, kind) not in k8s, f"{deployment['metadata']['name']} duplicates a process"
        k8s.add((target, kind))
    assert k8s == EXPECTED_PROCESSES
    assert set(compose_processes(footprint_services)) == EXPECTED_PROCESSES


def test_deployments_have_probes_resources_labels_and_matching_selectors(k8s_objects):
    deployments = of_kind(k8s_objects, "Deployment")
    assert deployments
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        template_labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector and selector.items() <= template_labels.items(), f"{name}: selector does not match template"
        assert template_labels.get(PART_OF) == "footprint", name
        assert template_labels.get(COMPONENT) in KINDS, name
        assert template_labels.get(NAME) in deploy.wsgi.SERVICES, name
        security = deployment["spec"]["template"]["spec"].get("securityContext", {})
        assert security.get("runAsNonRoot") is True and security.get("runAsUser", 0) != 0, name
        for container in containers(deployment):
            for probe in ("readinessProbe", "livenessProbe"):
                assert container.get(probe), f"{name}: no {probe}"
            resources = container.get("resources") or {}
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(bound) or {}), f"{name}: resources.{bound}"
            kind, _ = classify(container.get("command"))
            if kind == "web":
                assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
                assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
            else:
                assert "exec" in container["livenessProbe"], f"{name}: a worker's liveness is an exec probe"
                code = python_code(container["livenessProbe"]["exec"]["command"])
                assert code, name
                compile(code, name, "exec")


def test_http_probes_use_declared_ports_and_bind_matches(k8s_objects):
    for deployment in of_kind(k8s_objects, "Deployment"):
        numbers, names = container_ports(deployment)
        for container in containers(deployment):
            env = {e["name"]: e.get("value") for e in container.get("env") or []}
            kind, target = classify(container.get("command"))
            if kind == "web":
                assert port_of(env["BIND"]) in numbers, f"{deployment['metadata']['name']}: BIND vs containerPort"
                assert env["BIND"].startswith("0.0.0.0:")
                assert port_of(env["BIND"]) == DEFAULT_PORTS[target], f"{deployment['metadata']['name']}: port"
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                http = (container.get(probe) or {}).get("httpGet")
                if http:
                    assert http["port"] in numbers | names, f"{deployment['metadata']['name']} {probe} port"


def test_web_deployments_keep_two_replicas(k8s_objects):
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in of_kind(k8s_objects, "HorizontalPodAutoscaler")}
    for deployment in of_kind(k8s_objects, "Deployment"):
        name = deployment["metadata"]["name"]
        if deployment["spec"]["template"]["metadata"]["labels"][COMPONENT] != "web":
            continue
        if name in hpas:
            assert "replicas" not in deployment["spec"], f"{name}: replicas would fight its autoscaler on apply"
            assert hpas[name]["spec"]["minReplicas"] >= 2, name
        else:
            assert deployment["spec"].get("replicas", 1) >= 2, name


def test_worker_deployments_run_side_by_side(k8s_objects):
    """The outbox lease makes several relays of a service safe and consumers compete on durable queues, so
    every worker runs at least two replicas (or an autoscaler keeps two) and rolls without a gap."""
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in of_kind(k8s_objects, "HorizontalPodAutoscaler")}
    workers = [d for d in of_kind(k8s_objects, "Deployment")
               if d["spec"]["template"]["metadata"]["labels"][COMPONENT] == "worker"]
    assert len(workers) == len(deploy.wsgi.SERVICES)
    for deployment in workers:
        name = deployment["metadata"]["name"]
        if name in hpas:
            assert "replicas" not in deployment["spec"] and hpas[name]["spec"]["minReplicas"] >= 2, name
        else:
            assert deployment["spec"].get("replicas", 1) >= 2, name
        strategy = deployment["spec"].get("strategy", {})
        assert strategy.get("type", "RollingUpdate") == "RollingUpdate", name
        assert strategy.get("rollingUpdate", {}).get("maxUnavailable", 0) == 0 or "rollingUpdate" not in strategy, name


def test_autoscalers_for_the_gateway_and_intake(k8s_objects):
    deployments = {d["metadata"]["name"]: d for d in of_kind(k8s_objects, "Deployment")}
    hpas = of_kind(k8s_objects, "HorizontalPodAutoscaler")
    targets = {}
    for hpa in hpas:
        name = hpa["metadata"]["name"]
        assert hpa["apiVersion"] == "autoscaling/v2", name
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment" and target["name"] in deployments, name
        labels = deployments[target["name"]]["spec"]["template"]["metadata"]["labels"]
        assert labels[COMPONENT] in ("web", "worker"), f"{name} scales a {labels[COMPONENT]}"
        assert target["name"] not in targets, f"two autoscalers for {target['name']}"
        targets[target["name"]] = (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"])
        (metric,) = hpa["spec"]["metrics"]
        assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu", name
        assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}, name
        # Utilisation is relative to the request: every container of the target must request CPU.
        for container in containers(deployments[target["name"]]):
            assert container["resources"]["requests"].get("cpu"), f"{name}: {container['name']} requests no CPU"
    assert targets == AUTOSCALED


def test_intake_has_the_largest_memory_limit(k8s_objects):
    """Uploads stream, but an intake pod holds many in flight (WEB_CONCURRENCY x 32 threads)."""
    limits = {d["metadata"]["name"]: max(quantity_bytes(c["resources"]["limits"]["memory"]) for c in containers(d))
              for d in of_kind(k8s_objects, "Deployment")}
    intake = limits.pop("intake")
    assert limits and intake > max(limits.values()), f"intake's memory limit {intake} is not above {limits}"


def test_media_services_get_the_s3_media_url_in_k8s(k8s_objects, config_keys):
    for deployment in of_kind(k8s_objects, "Deployment"):
        if deployment["spec"]["template"]["metadata"]["labels"][NAME] not in MEDIA_SERVICES:
            continue
        for container in containers(deployment):
            env = {e["name"]: e.get("value") or "" for e in container.get("env") or []}
            url = env.get("MEDIA_URL", "")
            resolved = re.sub(r"\$\((\w+)\)", lambda m: config_keys["footprint-config"].get(m.group(1), "X"), url)
            parsed = urlsplit(resolved)
            assert parsed.scheme == "s3" and parsed.hostname and parsed.port, f"{deployment['metadata']['name']}: {url!r}"
            assert parsed.path.strip("/") == config_keys["footprint-config"]["MEDIA_BUCKET"], deployment["metadata"]["name"]


def test_services_select_deployments_and_target_their_ports(k8s_objects):
    deployments = of_kind(k8s_objects, "Deployment")
    services = of_kind(k8s_objects, "Service")
    assert {s["metadata"]["name"] for s in services} == set(deploy.wsgi.SERVICES)
    for service in services:
        name = service["metadata"]["name"]
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP", name
        selector = service["spec"]["selector"]
        matched = [d for d in deployments if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert len(matched) == 1, f"Service {name} selects {len(matched)} Deployments"
        numbers, names = container_ports(matched[0])
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert target in (names if isinstance(target, str) else numbers), f"Service {name} targets {target}"


def test_ingress_routes_to_the_gateway_and_admits_the_largest_body(k8s_objects):
    from gateway import routes

    services = {s["metadata"]["name"]: s for s in of_kind(k8s_objects, "Service")}
    (ingress,) = of_kind(k8s_objects, "Ingress")
    assert ingress["metadata"]["name"] == "footprint-gateway"
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == "gateway"
            assert backend["port"]["number"] in {p["port"] for p in services["gateway"]["spec"]["ports"]}
    body = size_bytes(ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"])
    largest = max([routes.DEFAULT_BODY_LIMIT] + [limit for _, limit in routes.BODY_LIMITS])
    assert body >= largest, "nginx would refuse bodies the gateway accepts"


def test_container_environment_resolves(k8s_objects, config_keys, secret_keys):
    """Every required variable is set, every $(VAR) refers to something defined before it (Kubernetes leaves
    unknown references as literal text), and every ConfigMap/Secret key referenced exists."""
    for deployment in of_kind(k8s_objects, "Deployment"):
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        for container in pod["containers"]:
            defined = set()
            for source in container.get("envFrom") or []:
                config = source["configMapRef"]["name"]
                assert config in config_keys, f"{name}: unknown ConfigMap {config}"
                defined |= set(config_keys[config])
            for entry in container.get("env") or []:
                for reference in re.findall(r"\$\((\w+)\)", entry.get("value") or ""):
                    assert reference in defined, f"{name}: {entry['name']} refers to undefined $({reference})"
                ref = (entry.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secret_keys.get(ref["name"], set()), f"{name}: secret key {ref['key']}"
                defined.add(entry["name"])
            for key in REQUIRED_ENV:
                assert key in defined, f"{name} lacks {key}"
            for mount in container.get("volumeMounts") or []:
                assert mount["name"] in {v["name"] for v in pod.get("volumes") or []}, f"{name}: {mount['name']}"
        for volume in pod.get("volumes") or []:
            if "secret" in volume:
                for item in volume["secret"].get("items") or []:
                    assert item["key"] in secret_keys[volume["secret"]["secretName"]], f"{name}: {item['key']}"


@pytest.mark.parametrize("variable", SERVICE_URL_ENV)
def test_service_urls_in_the_configmap_reach_their_services(k8s_objects, config_keys, variable):
    target = variable.removesuffix("_URL").lower()
    services = {s["metadata"]["name"]: s for s in of_kind(k8s_objects, "Service")}
    url = urlsplit(config_keys["footprint-config"][variable])
    assert url.scheme == "http" and url.hostname in services, variable
    service = services[url.hostname]
    assert (service["spec"]["selector"].get(NAME), service["spec"]["selector"].get(COMPONENT)) == (target, "web"), (
        f"{variable} reaches Service {url.hostname}, which does not select {target}'s web pods")
    assert url.port in {p["port"] for p in service["spec"]["ports"]}, variable


def test_configmap_basics(config_keys):
    assert "replicaSet=" in config_keys["footprint-config"]["DOCUMENTS_URL"]
    assert "w=majority" in config_keys["footprint-config"]["DOCUMENTS_URL"]
    assert config_keys["footprint-config"]["FOOTPRINT_INPROC_WORKERS"] == "false"


def test_identity_pods_get_their_keys_from_the_secret(k8s_objects):
    for deployment in of_kind(k8s_objects, "Deployment"):
        if deployment["spec"]["template"]["metadata"]["labels"][NAME] != "identity":
            continue
        for container in containers(deployment):
            env = {e["name"]: e for e in container.get("env") or []}
            for key in ("NATIONAL_ID_KEY", "NATIONAL_ID_HASH_KEY"):
                assert "secretKeyRef" in env[key].get("valueFrom", {}), f"{deployment['metadata']['name']}: {key}"
            key_file = env["JWT_PRIVATE_KEY_FILE"]["value"]
            mounts = [m["mountPath"] for m in container["volumeMounts"]]
            assert any(key_file.startswith(path.rstrip("/") + "/") for path in mounts), key_file


# ---- probes really work ----------------------------------------------------------------------------------

def worker_probe_code(k8s_objects, compose) -> str:
    """The one check used for every worker: k8s readiness and liveness probes and the compose healthcheck."""
    codes = {python_code(c[probe]["exec"]["command"]) for d in of_kind(k8s_objects, "Deployment")
             for c in containers(d) if classify(c.get("command"))[0] == "worker"
             for probe in ("readinessProbe", "livenessProbe")}
    codes |= {healthcheck_code(s["healthcheck"]["test"]) for s in compose["services"].values()
              if classify(s.get("command"))[0] == "worker"}
    assert len(codes) == 1, "worker probes differ"
    return codes.pop()


@pytest.mark.parametrize("process, healthy", [("worker", True), ("stopped worker", False), ("other", False)])
def test_the_worker_probe_tells_a_live_worker_from_anything_else(k8s_objects, compose, process, healthy):
    """Run the probe against a stand-in process (as if it were PID 1): 0 only for a running worker."""
    extra = ["-m", "deploy.worker"] if "worker" in process else ["something-else"]
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", *extra])
    try:
        if process == "stopped worker":
            os.kill(sleeper.pid, signal.SIGSTOP)
            deadline = time.monotonic() + 60  # the kernel stops it at once; a loaded machine may still take a while
            while "T" not in Path(f"/proc/{sleeper.pid}/status").read_text().split("State:")[1].split()[0]:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        code = worker_probe_code(k8s_objects, compose).replace("/proc/1/", f"/proc/{sleeper.pid}/")
        assert f"/proc/{sleeper.pid}/" in code
        result = subprocess.run([sys.executable, "-c", code], timeout=20)
        assert result.returncode == (0 if healthy else 1)
    finally:
        sleeper.kill()
        sleeper.wait()


# ---- the image -------------------------------------------------------------------------------------------

def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_dockerfile_runs_as_non_root_with_a_healthcheck():
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users, "no USER: the image would run as root"
    assert users[-1].split(":")[0] not in ("root", "0"), users[-1]
    healthchecks = [rest for keyword, rest in instructions if keyword == "HEALTHCHECK"]
    assert len(healthchecks) == 1 and "/healthz" in healthchecks[0] and "urllib" in healthchecks[0]
    import json

    exec_form = json.loads(healthchecks[0][healthchecks[0].index("CMD") + 3:].strip())
    compile(python_code(exec_form), "HEALTHCHECK", "exec")


def test_dockerfile_installs_requirements_and_copies_every_entry_point():
    instructions = dockerfile_instructions()
    assert any(k == "RUN" and "pip install -r requirements.txt" in rest for k, rest in instructions)
    copied = {rest.split()[0].rstrip("/") for k, rest in instructions if k == "COPY"}
    for package in {"deploy", "shared"} | {module.split(".")[0] for module in deploy.wsgi.SERVICES.values()}:
        assert package in copied, f"the image lacks {package}/"
        importlib.import_module(package)
    # The gateway serves the portal's static files at / from the folder beside gateway/.
    from gateway.app import PORTAL_DIR

    assert PORTAL_DIR.relative_to(ROOT).as_posix() in copied, "the image lacks portal/: the gateway would answer / 404"
    (cmd,) = [rest for k, rest in instructions if k == "CMD"]
    import json

    assert classify(json.loads(cmd)) == ("web", "gateway")
    check_web_entry_point("Dockerfile CMD", json.loads(cmd))
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    for entry in (".venv", ".git", "var", "tests", "bench"):
        assert entry in ignored, f".dockerignore misses {entry}"


# ---- the collector ---------------------------------------------------------------------------------------

def test_otel_collector_pipeline_is_wired():
    config = yaml.safe_load((ROOT / "deploy" / "otel-collector.yaml").read_text(encoding="utf-8"))
    assert set(config["receivers"]["otlp"]["protocols"]) == {"grpc", "http"}
    assert config["exporters"]["otlp/jaeger"]["endpoint"] == "jaeger:4317"
    (pipeline,) = config["service"]["pipelines"].values()
    for section in ("receivers", "processors", "exporters"):
        for component in pipeline[section]:
            assert component in config[section], f"pipeline uses undefined {component}"
    assert "batch" in pipeline["processors"] and "debug" in pipeline["exporters"]
    for extension in config["service"].get("extensions", []):
        assert extension in config["extensions"]
