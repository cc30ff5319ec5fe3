"""The images the pods run: both service images and the Envoy image as `make images` builds them
(devtools.images), and PostgreSQL: the chart's image where it is present or can be pulled, else a
stand-in with Debian's postgresql package on the same base (scripts/postgres.Dockerfile). The
chart is then rendered with the values that name the images actually used."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from devtools.containers import Engine
from devtools.images import Images, build_dockerfile, build_images, pip_ca_bundle, qualified
from devtools.paths import CHART, REPO_ROOT
from devtools.tools import Doc

__all__ = ["POSTGRES_DOCKERFILE", "PodImages", "pod_images"]

POSTGRES_DOCKERFILE = REPO_ROOT / "scripts" / "postgres.Dockerfile"
POSTGRES_STAND_IN = "localhost/meshchat-postgres:15"


@dataclass(frozen=True)
class PodImages:
    """The images of the pods, and the values that make the chart name them."""

    built: Images
    postgres: str

    def values(self) -> Doc:
        """Chart values for the Envoy and PostgreSQL images where the chart's own are not used."""
        values: Doc = {}
        if self.built.envoy_built:
            values["mesh"] = {"envoy": {"image": _image_values(self.built.envoy)}}
        if self.postgres == POSTGRES_STAND_IN:
            values["postgresql"] = {"image": _image_values(self.postgres)}
        return values


def _image_values(image: str) -> Doc:
    registry, _, rest = image.partition("/")
    repository, _, tag = rest.partition(":")
    return {"registry": registry, "repository": repository, "tag": tag}


def chart_postgres_image() -> str:
    """The PostgreSQL image of the chart's StatefulSet by default."""
    image = yaml.safe_load((CHART / "values.yaml").read_text())["postgresql"]["image"]
    return qualified(f"{image['registry']}/{image['repository']}:{image['tag']}")


def pod_images(engine: Engine, ca_bundle: Path | None = None) -> PodImages:
    """Build (or reuse from the engine's layer cache) every image the pods run."""
    bundle = ca_bundle or pip_ca_bundle()
    built = build_images(engine, ca_bundle=bundle, quiet=True)
    official = chart_postgres_image()
    if engine.image_exists(official) or engine.pull(official) is None:
        return PodImages(built, official)
    # Built every time: the engine's layer cache makes that quick, and a changed recipe counts.
    build_args = {"PYTHON_IMAGE": built.base.image, "REPLACES": official}
    build_dockerfile(engine, POSTGRES_DOCKERFILE, POSTGRES_STAND_IN, build_args, bundle, True)
    return PodImages(built, POSTGRES_STAND_IN)
