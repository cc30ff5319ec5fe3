"""What devtools.pods reads from the rendering, without running anything: the workloads in
start order, the DNS names each pod is given (only Services whose ports are the pod's own), the
sidecars apart from the apps, and the image values the chart is rendered with."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.images import Base, Images
from devtools.pods.images import POSTGRES_STAND_IN, PodImages, chart_postgres_image
from devtools.pods.workloads import Workload, dns_names, workloads
from devtools.podspec import Doc, Unsupported, volume_flags
from devtools.tools import find_helm, helm_template, load_docs
from tests.deploy.deploy_support import require

pytestmark = pytest.mark.pods


@pytest.fixture(scope="module")
def rendering() -> list[Doc]:
    """The chart's default rendering."""
    result = helm_template(require(find_helm))
    assert result.returncode == 0, result.stderr
    return load_docs(result.stdout)


def test_statefulsets_start_first_and_each_pod_gets_its_services_names(
    rendering: list[Doc],
) -> None:
    found = {w.name: w for w in workloads(rendering)}
    assert list(found) == ["meshchat-postgresql", "meshchat-auth", "meshchat-chat", "meshchat-edge"]
    assert found["meshchat-postgresql"].claims == ("data",)
    assert set(found["meshchat-postgresql"].aliases) == {
        *dns_names("meshchat-postgresql", "meshchat", "cluster.local"),
        *dns_names("meshchat-postgresql-hl", "meshchat", "cluster.local"),
    }
    assert "meshchat-auth-headless.meshchat.svc.cluster.local" in found["meshchat-auth"].aliases
    # The edge Service maps 443 to the listener's 8443, which an alias cannot: it is published.
    assert found["meshchat-edge"].aliases == ()
    assert [c["name"] for c in found["meshchat-chat"].sidecars] == ["envoy"]
    assert [c["name"] for c in found["meshchat-chat"].containers] == ["chat"]
    assert found["meshchat-edge"].container_port("https") == 8443


def test_dns_names_are_every_form_a_pods_resolver_accepts() -> None:
    assert dns_names("db", "ns", "example.org") == (
        "db",
        "db.ns",
        "db.ns.svc",
        "db.ns.svc.example.org",
    )


def test_an_init_container_that_runs_to_completion_has_no_translation() -> None:
    spec = {"initContainers": [{"name": "migrate"}], "containers": [{"name": "app"}]}
    workload = Workload("Deployment", "w", spec, {}, (), ())
    with pytest.raises(Unsupported, match="run to completion: \\['migrate'\\]"):
        _ = workload.sidecars


def test_a_volume_claim_is_a_host_directory(tmp_path: Path) -> None:
    container = {"volumeMounts": [{"name": "data", "mountPath": "/var/lib/data"}]}
    flags = volume_flags([], {"volumes": []}, container, tmp_path, {"data": tmp_path / "claim"})
    assert flags == ["--volume", f"{tmp_path / 'claim'}:/var/lib/data:rw"]


def test_the_chart_is_told_only_about_images_it_does_not_have() -> None:
    base = Base("localhost/stand-in", stand_in=True)
    built = Images(base, {}, "localhost/meshchat-envoy:1.40.0", envoy_built=True)
    assert PodImages(built, POSTGRES_STAND_IN).values() == {
        "mesh": {
            "envoy": {
                "image": {"registry": "localhost", "repository": "meshchat-envoy", "tag": "1.40.0"}
            }
        },
        "postgresql": {
            "image": {"registry": "localhost", "repository": "meshchat-postgres", "tag": "15"}
        },
    }
    official = Images(base, {}, "docker.io/envoyproxy/envoy:distroless-v1.40.0")
    assert PodImages(official, chart_postgres_image()).values() == {}
