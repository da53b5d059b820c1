import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from common import RESULTS, result_path  # noqa: E402


def test_a_host_without_vnni_does_not_overwrite_the_reference_record():
    assert result_path("throughput", "AVX-512 VNNI, AVX-512 BF16, AVX-512, AVX2") == RESULTS / "throughput.json"
    assert result_path("throughput", "AVX2") == RESULTS / "throughput-avx2.json"
    assert result_path("floor", "AVX-512, AVX2") == RESULTS / "floor-avx512.json"
