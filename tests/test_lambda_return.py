"""wm.lambda_return and wm.lambda_return_weights against loops written from each port's formula."""

import numpy as np
import pytest
import torch
import wmfast as wm
from hypothesis import given, settings
from hypothesis import strategies as st

CONVENTIONS = ["dreamerv3-torch", "dreamerv3-2023", "dreamerv3-2024"]


def random_inputs(seed, steps=16, batch=7, dtype=torch.float64, terminal_rate=0.15):
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(steps, batch, generator=g, dtype=dtype)
    values = 3.0 * torch.randn(steps, batch, generator=g, dtype=dtype)
    # Hard episode ends inside the horizon, mixed with soft continue probabilities.
    ends = torch.rand(steps, batch, generator=g, dtype=dtype) < terminal_rate
    soft = torch.rand(steps, batch, generator=g, dtype=dtype) < 0.3
    probs = torch.rand(steps, batch, generator=g, dtype=dtype)
    continues = torch.where(ends, 0.0, torch.where(soft, probs, 1.0))
    return rewards, values, continues


# --- reference loops, one per port, from their published formulas ------------------------------

def reference_dreamerv3_torch(reward, value, cont, gamma, lam):
    """dreamerv3-torch: lambda_return(reward[1:], value[:-1], γ cont[1:], bootstrap=value[-1]):
    inputs_t = r_t + p_t next_t (1 - λ) with next = value[1:] + [bootstrap], then a reverse scan
    agg <- inputs_t + p_t λ agg from the bootstrap."""
    r, v, p, boot = reward[1:], value[:-1], gamma * cont[1:], value[-1]
    next_values = torch.cat([v[1:], boot[None]])
    inputs = r + p * next_values * (1 - lam)
    agg = boot
    out = []
    for t in reversed(range(len(r))):
        agg = inputs[t] + p[t] * lam * agg
        out.append(agg)
    return torch.stack(out[::-1])


def reference_dreamerv3_2023(reward, value, cont, gamma, lam):
    """SheepRL's compute_lambda_values(r[1:], v[1:], γ c[1:], λ)."""
    r, v, c = reward[1:], value[1:], gamma * cont[1:]
    vals = [v[-1:]]
    interm = r + c * v * (1 - lam)
    for t in reversed(range(len(c))):
        vals.append(interm[t] + c[t] * lam * vals[-1])
    return torch.cat(list(reversed(vals))[:-1])


def reference_dreamerv3_2024(reward, value, cont, disc, lam, last=None):
    """Official 2024 lambda_return(last, term, rew, val, boot, disc, lam), time in dim 0."""
    last = torch.zeros_like(cont) if last is None else last
    term = 1 - cont
    boot = value
    rets = [boot[-1]]
    live = (1 - term)[1:] * disc
    keep = (1 - last)[1:] * lam
    interm = reward[1:] + (1 - keep) * live * boot[1:]
    for t in reversed(range(live.shape[0])):
        rets.append(interm[t] + live[t] * keep[t] * rets[-1])
    return torch.stack(list(reversed(rets))[:-1])


def reference_weights(cont, gamma, convention):
    if convention == "dreamerv3-torch":
        # torch.cumprod(torch.cat([ones_like(discount[:1]), discount[:-1]]), 0), used as [:-1]
        discount = gamma * cont
        weights = torch.cumprod(torch.cat([torch.ones_like(discount[:1]), discount[:-1]]), 0)
    else:
        # SheepRL torch.cumprod(continues * gamma, 0) / gamma; official jnp.cumprod(disc*con)/disc
        weights = torch.cumprod(cont * gamma, 0) / gamma
    return weights[:-1]


REFERENCES = {
    "dreamerv3-torch": reference_dreamerv3_torch,
    "dreamerv3-2023": reference_dreamerv3_2023,
    "dreamerv3-2024": reference_dreamerv3_2024,
}


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("seed", range(4))
def test_matches_each_ports_formula(convention, seed):
    rewards, values, continues = random_inputs(seed)
    gamma = wm.imagination.CONVENTIONS[convention]
    expected = REFERENCES[convention](rewards, values, continues, gamma, 0.95)
    got = wm.lambda_return(rewards, values, continues, lam=0.95, convention=convention)
    assert got.shape == (15, 7) and got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    weights = wm.lambda_return_weights(continues, convention=convention)
    torch.testing.assert_close(weights, reference_weights(continues, gamma, convention),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_explicit_discount_and_trailing_dims(convention):
    rewards, values, continues = random_inputs(5, steps=9, batch=12)
    shape = (9, 3, 4, 1)
    args = [x.reshape(shape) for x in (rewards, values, continues)]
    got = wm.lambda_return(*args, discount=0.9, lam=0.7, convention=convention)
    expected = REFERENCES[convention](*args, 0.9, 0.7)
    assert got.shape == (8, 3, 4, 1)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_conventions_default_discounts():
    assert wm.imagination.CONVENTIONS == {
        "dreamerv3-torch": 0.997, "dreamerv3-2023": 1 - 1 / 333, "dreamerv3-2024": 1.0}
    rewards, values, continues = random_inputs(9)
    for convention, gamma in wm.imagination.CONVENTIONS.items():
        torch.testing.assert_close(
            wm.lambda_return(rewards, values, continues, convention=convention),
            wm.lambda_return(rewards, values, continues, discount=gamma, convention="dreamerv3-torch"))


def test_last_flags_cut_the_lambda_chain_like_official_2024():
    rewards, values, continues = random_inputs(3)
    g = torch.Generator().manual_seed(11)
    last = (torch.rand(rewards.shape, generator=g) < 0.2).to(rewards.dtype)
    got = wm.lambda_return(rewards, values, continues, discount=0.99, convention="dreamerv3-2024",
                           last=last)
    expected = reference_dreamerv3_2024(rewards, values, continues, 0.99, 0.95, last)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    index = torch.nonzero(last[1:])
    t, n = index[0]
    torch.testing.assert_close(got[t, n], rewards[t + 1, n] + 0.99 * continues[t + 1, n]
                               * values[t + 1, n])


def test_lambda_limits():
    rewards, values, continues = random_inputs(4, steps=6, batch=3)
    gamma = 0.9
    one_step = rewards[1:] + gamma * continues[1:] * values[1:]
    torch.testing.assert_close(wm.lambda_return(rewards, values, continues, gamma, lam=0.0),
                               one_step)
    # λ = 1: the discounted Monte-Carlo return, bootstrapped with values[H], summed forwards.
    expected = torch.zeros(5, 3, dtype=torch.float64)
    for t in range(5):
        scale = torch.ones(3, dtype=torch.float64)
        for k in range(t + 1, 6):
            expected[t] += scale * rewards[k]
            scale = scale * gamma * continues[k]
        expected[t] += scale * values[5]
    torch.testing.assert_close(wm.lambda_return(rewards, values, continues, gamma, lam=1.0),
                               expected)


def test_terminal_state_stops_the_return():
    rewards = torch.tensor([[0.0], [1.0], [2.0], [4.0], [8.0]])
    values = torch.full((5, 1), 100.0)
    continues = torch.tensor([[1.0], [1.0], [0.0], [1.0], [1.0]])
    got = wm.lambda_return(rewards, values, continues, discount=1.0, lam=1.0)
    # From s_0: r_1 + r_2, nothing after the terminal state s_2.
    assert float(got[0, 0]) == 3.0 and float(got[1, 0]) == 2.0
    assert float(got[2, 0]) == 4.0 + 8.0 + 100.0
    weights = wm.lambda_return_weights(continues, discount=1.0)
    torch.testing.assert_close(weights[:, 0], torch.tensor([1.0, 1.0, 1.0, 0.0]))
    weights = wm.lambda_return_weights(continues, discount=1.0, convention="dreamerv3-2023")
    torch.testing.assert_close(weights[:, 0], torch.tensor([1.0, 1.0, 0.0, 0.0]))


def test_gradients_match_the_reference_and_gradcheck():
    rewards, values, continues = random_inputs(6, steps=5, batch=2)
    leaves = [x.clone().requires_grad_() for x in (rewards, values, continues)]
    got = wm.lambda_return(*leaves, discount=0.97, lam=0.8)
    got.square().sum().backward()
    ours = [x.grad for x in leaves]
    leaves = [x.clone().requires_grad_() for x in (rewards, values, continues)]
    reference_dreamerv3_torch(*leaves, 0.97, 0.8).square().sum().backward()
    for a, b in zip(ours, [x.grad for x in leaves]):
        torch.testing.assert_close(a, b)
    assert torch.autograd.gradcheck(
        lambda r, v, c: wm.lambda_return(r, v, c, 0.9, 0.7),
        [x.clone().requires_grad_() for x in (rewards, values, continues)])
    # The no-grad path (in-place writes into one buffer) gives the same numbers.
    with torch.no_grad():
        torch.testing.assert_close(wm.lambda_return(rewards, values, continues, 0.97, 0.8),
                                   got.detach())
    assert not wm.lambda_return_weights(leaves[2]).requires_grad


def test_numpy_and_list_inputs_and_dtypes():
    rewards, values, continues = random_inputs(7, steps=4, batch=2)
    got = wm.lambda_return(rewards.numpy(), values.numpy(), continues.numpy())
    assert got.dtype == torch.get_default_dtype()
    torch.testing.assert_close(got, wm.lambda_return(rewards, values, continues).float())
    lists = wm.lambda_return(rewards.tolist(), values.tolist(), continues.tolist())
    assert lists.dtype == torch.float32
    mixed = wm.lambda_return(rewards.float(), values, continues.float())
    assert mixed.dtype == torch.float64
    assert wm.lambda_return_weights(np.ones((4, 2))).dtype == torch.float32


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 12), st.integers(1, 5), st.floats(0.0, 1.0), st.floats(0.0, 1.0),
       st.sampled_from(CONVENTIONS), st.integers(0, 2**31 - 1))
def test_matches_reference_property(steps, batch, gamma, lam, convention, seed):
    rewards, values, continues = random_inputs(seed, steps=steps, batch=batch)
    got = wm.lambda_return(rewards, values, continues, gamma, lam, convention=convention)
    torch.testing.assert_close(got, REFERENCES[convention](rewards, values, continues, gamma, lam),
                               rtol=1e-10, atol=1e-10)
    if gamma > 1e-3:  # the reference divides by γ; ours never does
        torch.testing.assert_close(
            wm.lambda_return_weights(continues, gamma, convention),
            reference_weights(continues, gamma, convention), rtol=1e-10, atol=1e-12)


def test_errors_name_the_argument():
    rewards, values, continues = random_inputs(8, steps=5, batch=3)
    with pytest.raises(ValueError, match=r"values must have the shape of rewards \[5, 3\].*\[4, 3\]"):
        wm.lambda_return(rewards, values[:-1], continues)
    with pytest.raises(ValueError, match=r"continues must have the shape of rewards.*\[5, 2\]"):
        wm.lambda_return(rewards, values, continues[:, :2])
    with pytest.raises(ValueError, match=r"rewards must have shape \[H\+1, \.\.\.\] with H\+1 >= 2"):
        wm.lambda_return(rewards[:1], values[:1], continues[:1])
    with pytest.raises(ValueError, match="rewards must have shape"):
        wm.lambda_return(torch.tensor(1.0), torch.tensor(1.0), torch.tensor(1.0))
    bad = values.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="values must be finite, got 1 NaN"):
        wm.lambda_return(rewards, bad, continues)
    bad = continues.clone()
    bad[0, 0] = float("inf")
    with pytest.raises(ValueError, match="continues must be finite"):
        wm.lambda_return(rewards, values, bad)
    with pytest.raises(ValueError, match="continues must be finite"):
        wm.lambda_return_weights(bad)
    with pytest.raises(ValueError, match="convention must be one of"):
        wm.lambda_return(rewards, values, continues, convention="sheeprl")
    with pytest.raises(ValueError, match="discount must be a number in"):
        wm.lambda_return(rewards, values, continues, discount=1.5)
    with pytest.raises(ValueError, match="lam must be a number in"):
        wm.lambda_return(rewards, values, continues, lam=-0.1)
    with pytest.raises(ValueError, match=r"last must have the shape of rewards"):
        wm.lambda_return(rewards, values, continues, last=torch.zeros(5))
    with pytest.raises(TypeError, match="rewards must be a torch tensor"):
        wm.lambda_return(object(), values, continues)
