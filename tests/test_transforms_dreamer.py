"""wmfast.transforms' DreamerV3 parts: symlog/symexp, the two bin layouts, two-hot codes."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from wmfast import transforms as T

LAYOUTS = ["symlog_linear", "symexp"]
finite = st.floats(min_value=-1e8, max_value=1e8, allow_nan=False, allow_infinity=False)


def test_symlog_symexp_values_and_inverse():
    x = torch.tensor([-1e6, -2.0, -1e-3, 0.0, 1e-3, 0.5, 7.0, 1e6], dtype=torch.float64)
    expected = torch.sign(x) * torch.log(torch.abs(x) + 1.0)
    torch.testing.assert_close(T.symlog(x), expected)
    torch.testing.assert_close(T.symexp(T.symlog(x)), x, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(T.symlog(T.symexp(x.clamp(-30, 30))), x.clamp(-30, 30))


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=-50, max_value=50, allow_nan=False))
def test_symexp_inverts_symlog_property(value):
    x = torch.tensor(value, dtype=torch.float64)
    assert math.isclose(float(T.symlog(T.symexp(x))), value, rel_tol=1e-9, abs_tol=1e-12)


def test_symlog_linear_layout_matches_dreamerv3_torch():
    # dreamerv3-torch's DiscDist: torch.linspace(-20, 20, steps=255), symlog / symexp.
    b = T.bins("symlog_linear")
    assert b.num_bins == 255 and b.space == "symlog"
    reference = torch.linspace(-20.0, 20.0, 255, dtype=torch.float64)
    torch.testing.assert_close(b.positions, reference, rtol=0, atol=1e-12)
    assert float(b.positions[127]) == 0.0
    torch.testing.assert_close(b.positions, -b.positions.flip(0), rtol=0, atol=0)
    assert b.high == pytest.approx(math.expm1(20.0))


def test_symexp_layout_matches_official_2024():
    # symexp_twohot: half = symexp(linspace(-20, 0, 128)); concat([half, -half[:-1][::-1]]).
    b = T.bins("symexp")
    assert b.num_bins == 255 and b.space == "raw"
    half = np.linspace(-20.0, 0.0, 128)
    half = np.sign(half) * np.expm1(np.abs(half))
    reference = np.concatenate([half, -half[:-1][::-1]])
    np.testing.assert_allclose(b.positions.numpy(), reference, rtol=1e-12, atol=0)
    torch.testing.assert_close(b.positions, -b.positions.flip(0), rtol=0, atol=0)
    even = T.bins("symexp", num_bins=254)
    half = np.linspace(-20.0, 0.0, 127)
    half = np.sign(half) * np.expm1(np.abs(half))
    np.testing.assert_allclose(even.positions.numpy(), np.concatenate([half, -half[::-1]]),
                               rtol=1e-12, atol=0)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_two_hot_round_trip(layout):
    b = T.bins(layout)
    x = torch.tensor([[-1234.5, -3.0, -0.25, 0.0], [1e-4, 0.9, 17.0, 4e5]])
    code = T.two_hot(x, b)
    assert code.shape == (2, 4, 255) and code.dtype == torch.float32
    torch.testing.assert_close(code.sum(-1), torch.ones(2, 4))
    assert int((code > 0).sum(-1).max()) <= 2
    torch.testing.assert_close(T.two_hot_decode(code, b), x, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(b.decode(b.encode(x)), x, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_two_hot_expectation_in_bin_space_is_exact(layout):
    b = T.bins(layout)
    x = torch.linspace(-300.0, 300.0, 1001, dtype=torch.float64)
    code = T.two_hot(x, b)
    torch.testing.assert_close((code * b.positions).sum(-1), b.to_space(x), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_two_hot_clips_at_the_edges(layout):
    b = T.bins(layout)
    x = torch.tensor([-1e30, -b.high, b.high, 1e30, 3e38], dtype=torch.float64)
    code = T.two_hot(x, b)
    assert code[0, 0] == 1.0 and code[1, 0] == 1.0
    assert code[2, -1] == 1.0 and code[3, -1] == 1.0 and code[4, -1] == 1.0
    decoded = T.two_hot_decode(code, b)
    torch.testing.assert_close(decoded, torch.tensor([-1, -1, 1, 1, 1.0],
                                                     dtype=torch.float64) * b.high)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_exact_bin_values_are_one_hot(layout):
    b = T.bins(layout)
    values = b.values[[0, 50, 127, 200, 254]]
    code = T.two_hot(values, b)
    assert torch.equal(code.argmax(-1), torch.tensor([0, 50, 127, 200, 254]))
    torch.testing.assert_close(code.max(-1).values, torch.ones(5, dtype=torch.float64))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_uniform_and_symmetric_distributions_decode_to_exactly_zero(layout, dtype):
    b = T.bins(layout)
    uniform = torch.full((3, 255), 1.0 / 255, dtype=dtype)
    assert torch.equal(T.two_hot_decode(uniform, b), torch.zeros(3, dtype=dtype))
    assert torch.equal(T.two_hot_decode(torch.zeros(4, 255, dtype=dtype), b, from_logits=True),
                       torch.zeros(4, dtype=dtype))
    half = torch.rand(5, 127, dtype=dtype, generator=torch.Generator().manual_seed(0))
    symmetric = torch.cat([half.flip(-1), torch.rand(5, 1, dtype=dtype), half], -1)
    symmetric = symmetric / symmetric.sum(-1, keepdim=True)
    # Normalising may round the two halves differently; the symmetric sum cancels them when
    # they are equal, so compare against the plain sum's residue.
    assert float(T.two_hot_decode(symmetric, b).abs().max()) <= 1e-6 * b.high


def test_plain_sum_would_not_give_zero_for_symexp_bins():
    # Why the symmetric sum is needed: left-to-right accumulation leaves a residue.
    b = T.bins("symexp")
    uniform = torch.full((255,), 1.0 / 255)
    assert float((uniform * b.on(uniform)).sum()) != 0.0


def test_two_hot_decode_from_logits_matches_softmax():
    b = T.bins("symlog_linear")
    logits = torch.randn(6, 255, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(T.two_hot_decode(logits, b, from_logits=True),
                               T.two_hot_decode(torch.softmax(logits, -1), b))
    plain = T.symexp((torch.softmax(logits, -1) * b.on(logits)).sum(-1))
    torch.testing.assert_close(T.two_hot_decode(logits, b, from_logits=True), plain,
                               rtol=1e-5, atol=1e-6)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(LAYOUTS), st.lists(finite, min_size=1, max_size=8))
def test_two_hot_round_trip_property(layout, values):
    b = T.bins(layout)
    x = torch.tensor(values, dtype=torch.float64)
    code = T.two_hot(x, b)
    assert bool((code >= 0).all())
    np.testing.assert_allclose(code.sum(-1).numpy(), 1.0, rtol=1e-12)
    np.testing.assert_allclose(T.two_hot_decode(code, b).numpy(), values, rtol=1e-9,
                               atol=1e-9)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(LAYOUTS), finite)
def test_two_hot_neighbours_bracket_the_value_property(layout, value):
    b = T.bins(layout)
    code = T.two_hot(torch.tensor([value], dtype=torch.float64), b)[0]
    nonzero = torch.nonzero(code).flatten()
    assert len(nonzero) in (1, 2)
    if len(nonzero) == 2:
        assert int(nonzero[1] - nonzero[0]) == 1
        low, high = b.values[nonzero[0]], b.values[nonzero[1]]
        assert float(low) <= value <= float(high)


def test_inputs_numpy_lists_integers_and_devices():
    b = T.bins("symexp")
    assert T.two_hot(np.array([1.0, 2.0]), b).dtype == torch.float64
    assert T.two_hot([1, 2], b).dtype == torch.get_default_dtype()
    assert T.two_hot_decode(np.full((2, 255), 1 / 255), b).shape == (2,)


def test_errors():
    b = T.bins("symexp")
    with pytest.raises(ValueError, match="layout must be one of"):
        T.bins("linear")
    with pytest.raises(ValueError, match="num_bins"):
        T.bins("symexp", num_bins=2)
    with pytest.raises(ValueError, match="limit"):
        T.bins("symexp", limit=float("inf"))
    with pytest.raises(ValueError, match="x must be finite"):
        T.two_hot(torch.tensor([1.0, float("nan")]), b)
    with pytest.raises(ValueError, match=r"probs must have 255 entries.*\[3, 41\]"):
        T.two_hot_decode(torch.zeros(3, 41), b)
    with pytest.raises(TypeError, match="bins must be a wmfast.transforms.Bins"):
        T.two_hot(torch.zeros(3), 255)
