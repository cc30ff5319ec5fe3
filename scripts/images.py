"""``make images``: both service images from the Dockerfile, with docker or podman, and the Envoy
image for the sidecars where the chart's cannot be pulled (devtools.images does the work).

    python -m scripts.images                    # official base if it can be pulled, else the stand-in
    python -m scripts.images --base stand-in    # always the stand-in
    python -m scripts.images --ca-bundle /etc/ssl/certs/ca-certificates.crt
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from devtools.containers import EngineMissing, find_engine
from devtools.images import BASE_CHOICES, BuildError, build_images, pip_ca_bundle


def main(argv: Sequence[str] | None = None) -> int:
    """Build the images; 1 with a one-line reason when that cannot be done."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument(
        "--base",
        choices=BASE_CHOICES,
        default="auto",
        help="official: the pinned Python image; stand-in: built from Debian's packages; "
        "auto: official if it can be pulled (default)",
    )
    parser.add_argument(
        "--ca-bundle",
        type=Path,
        default=None,
        help="CA bundle for pip inside the build (default: the one pip trusts here)",
    )
    parser.add_argument(
        "--mirror", default=None, help="Debian mirror for the stand-in (default: apt's)"
    )
    parser.add_argument(
        "--envoy",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also provide the Envoy image for the chart (default: yes)",
    )
    args = parser.parse_args(argv)
    try:
        images = build_images(
            find_engine(),
            base_choice=args.base,
            ca_bundle=args.ca_bundle or pip_ca_bundle(),
            mirror=args.mirror,
            envoy=args.envoy,
        )
    except (EngineMissing, BuildError) as exc:
        print(f"make images: {exc}", file=sys.stderr)
        return 1
    print(images.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
