from deadtree.machine import machine_description, vector_extensions


def test_vector_extensions_name_what_decides_model_speed():
    assert vector_extensions("fpu sse avx avx2 fma") == "AVX2"
    assert vector_extensions("avx2 avx512f avx512_vnni avx512_bf16") == "AVX-512 VNNI, AVX-512 BF16, AVX-512, AVX2"
    assert vector_extensions("sse sse2") == "no AVX2"


def test_machine_description_names_the_extensions_of_this_cpu():
    assert f"({vector_extensions()})" in machine_description()
