"""core.compare (the diff readouts) and core.device (what runs where)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from core import device as dev
from core.compare import compare, default_tolerance, eps, error_vs_reference
from core.identity import identity_demo


def test_identical_tensors():
    a = torch.randn(4, 5)
    d = compare(a, a.clone())
    assert d.max_abs == 0 and d.max_rel == 0 and d.bitwise_equal == 1 and d.allclose
    assert (d.rtol, d.atol) == default_tolerance(torch.float32)


def test_relative_difference_is_not_fooled_by_near_zero_outputs():
    b = torch.tensor([1e-30, 1.0, -2.0], dtype=torch.float64)
    a = b + torch.tensor([1e-12, 0.0, 0.0], dtype=torch.float64)
    d = compare(a, b)
    # Element-wise it would be 1e-12 / 1e-30 = 1e18; norm-wise it is 1e-12 / 2.
    assert d.max_rel == pytest.approx(0.5e-12)
    assert d.eps_units == pytest.approx(0.5e-12 / torch.finfo(torch.float64).eps)


def test_bitwise_share_and_allclose():
    b = torch.ones(4)
    a = b.clone()
    a[0] = torch.nextafter(torch.tensor(1.0), torch.tensor(2.0))  # one ulp away
    d = compare(a, b)
    assert d.bitwise_equal == 0.75 and d.allclose and d.eps_units == pytest.approx(1.0)
    a[1] = 1.1
    assert not compare(a, b).allclose


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_every_dtype(dtype):
    a = torch.randn(3, 3).to(dtype)
    d = compare(a, a)
    assert d.dtype == str(dtype).removeprefix("torch.") and d.bitwise_equal == 1


def test_negative_zero_counts_as_equal_value_but_different_bits():
    d = compare(torch.tensor([0.0]), torch.tensor([-0.0]))
    assert d.max_abs == 0 and d.bitwise_equal == 0 and d.allclose


def test_mismatches_are_refused():
    with pytest.raises(ValueError, match="shapes"):
        compare(torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match="dtypes"):
        compare(torch.zeros(2), torch.zeros(2, dtype=torch.float64))


@given(st.sampled_from([torch.float16, torch.bfloat16, torch.float32]), st.integers(0, 100))
def test_error_vs_reference_is_rounding_sized(dtype, seed):
    ref = torch.randn(50, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    err = error_vs_reference(ref.to(dtype), ref)
    assert 0 <= err.eps_units <= 1.0  # rounding to nearest is at most half an ulp of the largest
    assert err.max_rel == pytest.approx(err.eps_units * eps(dtype))


def test_identity_demo_precision_ladder():
    """The essay's precision story: float64 ≪ float32 ≪ bfloat16 differences."""
    f64 = identity_demo(1, 20, 64, 8, dtype=torch.float64)
    f32 = identity_demo(1, 20, 64, 8, dtype=torch.float32)
    bf16 = identity_demo(1, 20, 64, 8, dtype=torch.bfloat16)
    assert f64.max_abs < 1e-12
    assert f64.max_rel < f32.max_rel < bf16.max_rel
    assert f32.allclose


def test_device_and_dtype_names():
    assert dev.available_devices()[0] == "cpu"
    for name in dev.DTYPE_NAMES:
        assert dev.dtype_name(dev.dtype_from_name(name)) == name
    with pytest.raises(ValueError, match="unknown dtype"):
        dev.dtype_from_name("int8")
    with pytest.raises(ValueError):
        dev.dtype_name(torch.int32)
    assert dev.supported_dtypes("cpu") == list(dev.DTYPE_NAMES)
    assert dev.is_supported("bfloat16", "cpu")
    assert not dev.is_supported("float32", "tpu")
    assert not dev.is_supported("int8", "cpu")
    info = dev.describe("cpu")
    assert info["device"] == "cpu" and info["torch"] == torch.__version__


def test_cuda_absent_or_present_is_reported_consistently():
    if torch.cuda.is_available():
        assert "cuda" in dev.available_devices() and "float32" in dev.supported_dtypes("cuda")
    else:
        assert dev.available_devices() == ["cpu"] and dev.supported_dtypes("cuda") == []


def test_overlapping_thread_requests_restore_the_process_count():
    """Two sessions that change torch's thread count in an overlapping order leave it as it was."""
    import torch

    from core.device import torch_threads

    base = torch.get_num_threads()
    first = torch_threads(1)
    second = torch_threads(2)
    first.__enter__()
    assert torch.get_num_threads() == 1
    second.__enter__()
    assert torch.get_num_threads() == 2
    first.__exit__(None, None, None)  # the first section ends while the second still runs
    assert torch.get_num_threads() == 2  # the running section keeps what it asked for
    second.__exit__(None, None, None)
    assert torch.get_num_threads() == base  # not the 1 a naive "restore the old value" would leave
