"""Generate the Python code for proto/ into services/meshchat (or into another directory).

Usage: python scripts/genproto.py [OUTPUT_ROOT]

The output is committed; tests/test_generated_code.py regenerates into a temporary
directory and fails when the committed files differ.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
DEFAULT_OUTPUT = ROOT / "services"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def proto_files() -> list[Path]:
    """Every .proto file below proto/, sorted."""
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generate(output_root: Path) -> list[Path]:
    """Run protoc with the grpc and mypy plugins; return the files written."""
    output_root.mkdir(parents=True, exist_ok=True)
    well_known = str(resources.files("grpc_tools") / "_proto")
    sources = [str(p.relative_to(PROTO_ROOT)) for p in proto_files()]
    plugin_dir = Path(sys.executable).parent
    args = [
        "grpc_tools.protoc",
        f"--plugin=protoc-gen-mypy={plugin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={plugin_dir / 'protoc-gen-mypy_grpc'}",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={output_root}",
        f"--grpc_python_out={output_root}",
        f"--mypy_out={output_root}",
        f"--mypy_grpc_out={output_root}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    package_dirs = {output_root / Path(s).parent for s in sources}
    for directory in sorted(package_dirs):
        for parent in [directory, *directory.parents]:
            if parent == output_root:
                break
            (parent / "__init__.py").touch()
    (output_root / "meshchat" / "py.typed").touch()
    return sorted(
        p for p in (output_root / "meshchat").rglob("*") if p.name.endswith(GENERATED_SUFFIXES)
    )


def main() -> None:
    output = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUTPUT
    for path in generate(output):
        print(path.relative_to(output))


if __name__ == "__main__":
    main()
