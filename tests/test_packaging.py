"""Shipped models travel with the wheel (to <prefix>/share/deadtree/models, where the registry looks)."""
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_carries_the_models_and_the_registry_finds_them_there(tmp_path):
    shipped = sorted(p.name for p in (ROOT / "models").glob("*.onnx"))
    if not shipped:
        pytest.skip("no models in models/ yet")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next(tmp_path.glob("deadtree-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for model in shipped:
        assert any(n.endswith(f".data/data/share/deadtree/models/{model}") for n in names), model
        assert any(n.endswith(f".data/data/share/deadtree/models/{Path(model).stem}.md") for n in names), model
