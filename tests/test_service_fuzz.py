"""Property-based fuzzing of the service from its own OpenAPI document (schemathesis): whatever the generated
requests hold, the server answers without a 5xx and stays up. Bounded in examples and time."""
from __future__ import annotations

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.scenes import write_scene
from tests.test_service_harness import ServiceProcess, make_toy_models

schemathesis = pytest.importorskip("schemathesis", reason="fuzzing needs schemathesis (pip install -e '.[dev]')")
from schemathesis.checks import not_a_server_error  # noqa: E402

EXAMPLES_PER_OPERATION = 12


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    process = ServiceProcess(root / "data", make_toy_models(root / "models"), root / "server.log",
                             workers=1, queue_limit=4, max_upload_mb=1, sync_max_upload_mb=1,
                             max_pixels=1e7, sync_max_pixels=2e5).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def api_schema(fuzzed_server):
    return schemathesis.openapi.from_url(f"{fuzzed_server.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
def test_no_input_makes_the_server_fail(case, fuzzed_server):
    case.call_and_validate(checks=[not_a_server_error], timeout=30)
    assert fuzzed_server.alive(), f"the server died:\n{fuzzed_server.log()}"


@pytest.fixture(scope="module")
def scene_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("fuzz-scene") / "scene.tif"
    write_scene(path, height=120, width=100)
    return path.read_bytes()


@given(data=st.data())
@settings(max_examples=20, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
def test_damaged_geotiffs_get_an_answer_never_a_5xx(data, scene_bytes, fuzzed_server):
    """A real GeoTIFF with bytes of its header and tag tables overwritten, and maybe cut off."""
    damaged = bytearray(scene_bytes)
    header_end = min(len(damaged), 1024)
    for _ in range(data.draw(st.integers(1, 8), label="changes")):
        where = data.draw(st.integers(0, header_end - 1), label="offset")
        damaged[where] = data.draw(st.integers(0, 255), label="byte")
    cut = data.draw(st.sampled_from([len(damaged), len(damaged) // 2, 300, 16]), label="length")
    answer = httpx.post(f"{fuzzed_server.url}/v1/segment", files={"file": ("damaged.tif", bytes(damaged[:cut]))},
                        timeout=60)
    assert answer.status_code < 500, answer.text
    if answer.status_code != 200:
        assert answer.json()["detail"]


def test_server_is_still_healthy_after_fuzzing(fuzzed_server):
    assert httpx.get(f"{fuzzed_server.url}/readyz", timeout=10).status_code == 200
