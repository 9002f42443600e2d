"""The fused straight-through categorical sampler (wmfast.dreamer.sample_onehot, a C++ kernel)
and the RSSM's memory-lean LayerNorm GRU, against plain torch references."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from wmfast import _torch_ext
from wmfast import dreamer as dr
from wmfast.dreamer.rssm import _gates


def reference_probs(logits, unimix):
    """(1 - u) softmax + u / C, written out."""
    return (1.0 - unimix) * torch.softmax(logits, -1) + unimix / logits.shape[-1]


@pytest.mark.parametrize("unimix", [0.0, 0.01, 0.3])
def test_draws_follow_the_mixed_probabilities_chi_square(unimix):
    logits = torch.tensor([2.0, 0.5, 0.0, -1.0, -3.0, 1.0, -8.0, 0.2], dtype=torch.float64)
    rows = 200_000
    gen = torch.Generator().manual_seed(7)
    sample, _ = dr.sample_onehot(logits.expand(rows, 8), unimix, generator=gen)
    counts = sample.sum(0)
    expected = reference_probs(logits, unimix) * rows
    keep = expected > 5   # chi-square needs expected counts above ~5 (the -8 logit at u = 0)
    statistic = float(((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum())
    # Fixed seed, so this is deterministic; the bound is the 99.9% quantile.
    assert statistic < stats.chi2.ppf(0.999, int(keep.sum()) - 1)
    assert float(counts[~keep].sum()) <= 5


@given(rows=st.integers(0, 40), classes=st.integers(1, 12), unimix=st.sampled_from([0.0, 0.01, 0.5]),
       dtype=st.sampled_from([torch.float32, torch.float64]), seed=st.integers(0, 2**31))
@settings(max_examples=40, deadline=None)
def test_samples_are_one_hot_and_log_probs_match(rows, classes, unimix, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    logits = (torch.randn(rows, 3, classes, generator=gen, dtype=torch.float64) * 4).to(dtype)
    sample, log_probs = dr.sample_onehot(logits, unimix, generator=gen)
    assert sample.shape == logits.shape and sample.dtype == dtype
    assert log_probs.dtype == dtype
    assert torch.all((sample == 0) | (sample == 1))
    assert torch.all(sample.sum(-1) == 1)
    torch.testing.assert_close(log_probs, torch.log(reference_probs(logits, unimix)))


@pytest.mark.parametrize("unimix", [0.0, 0.01, 0.4])
def test_straight_through_gradient_equals_the_softmaxs(unimix):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 4, 9, generator=g, dtype=torch.float64).requires_grad_()
    w_sample = torch.randn(6, 4, 9, generator=g, dtype=torch.float64)
    w_logp = torch.randn(6, 4, 9, generator=g, dtype=torch.float64)
    sample, log_probs = dr.sample_onehot(logits, unimix)
    for loss_of in (lambda s, lp: (s * w_sample).sum(),
                    lambda s, lp: (lp * w_logp).sum(),
                    lambda s, lp: (s * w_sample).sum() + (lp * w_logp).sum()):
        (ours,) = torch.autograd.grad(loss_of(sample, log_probs), logits, retain_graph=True)
        probs = reference_probs(logits, unimix)
        (reference,) = torch.autograd.grad(loss_of(probs, torch.log(probs)), logits)
        torch.testing.assert_close(ours, reference)
    # gradcheck of log p's backward (the sample's straight-through gradient is by design not
    # its numerical derivative, which is 0: compared with the reference above)
    def fn(x):
        return dr.sample_onehot(x, unimix)[1]

    torch.autograd.gradcheck(fn, (logits.detach().requires_grad_(),))


def test_reproducible_under_a_seed():
    logits = torch.randn(300, 32, 32)
    a = dr.sample_onehot(logits, 0.01, torch.Generator().manual_seed(5))[0]
    b = dr.sample_onehot(logits, 0.01, torch.Generator().manual_seed(5))[0]
    c = dr.sample_onehot(logits, 0.01, torch.Generator().manual_seed(6))[0]
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(11)   # the default generator
    d = dr.sample_onehot(logits, 0.01)[0]
    torch.manual_seed(11)
    assert torch.equal(d, dr.sample_onehot(logits, 0.01)[0])
    # The draws are one uniform per row, in row order: the first rows do not depend on the batch.
    e = dr.sample_onehot(logits[:10], 0.01, torch.Generator().manual_seed(5))[0]
    assert torch.equal(e, a[:10])
    # Threads do not change the draws.
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        f = dr.sample_onehot(logits.expand(4, 300, 32, 32), 0.01,
                             torch.Generator().manual_seed(5))[0]
    finally:
        torch.set_num_threads(threads)
    g = dr.sample_onehot(logits.expand(4, 300, 32, 32), 0.01, torch.Generator().manual_seed(5))[0]
    assert torch.equal(f, g) and torch.equal(f[0], a)


def test_errors_name_the_argument_and_change_nothing():
    gen = torch.Generator().manual_seed(0)
    before = gen.get_state()
    with pytest.raises(TypeError, match="logits must be a floating tensor, got dtype torch.int64"):
        dr.sample_onehot(torch.ones(3, 4, dtype=torch.int64), 0.01, gen)
    with pytest.raises(TypeError, match="logits must be a torch tensor"):
        dr.sample_onehot([[0.0, 1.0]], 0.01, gen)
    with pytest.raises(ValueError, match=r"unimix must be a number in \[0, 1\), got 1.0"):
        dr.sample_onehot(torch.zeros(3, 4), 1.0, gen)
    with pytest.raises(ValueError, match=r"logits must have shape \[..., C\] with C >= 1"):
        dr.sample_onehot(torch.zeros(3, 0), 0.01, gen)
    with pytest.raises(TypeError, match="generator must be a torch.Generator or None, got int"):
        dr.sample_onehot(torch.zeros(3, 4), 0.01, 0)
    assert torch.equal(gen.get_state(), before)
    # The compiled entry point checks for itself.
    ext = _torch_ext.load()
    with pytest.raises(ValueError, match="logits must be float32 or float64, got Half"):
        ext.sample_onehot(torch.zeros(3, 4, dtype=torch.float16), 0.0, None)
    with pytest.raises(ValueError, match=r"unimix must be in \[0, 1\), got nan"):
        ext.sample_onehot(torch.zeros(3, 4), float("nan"), None)
    with pytest.raises(ValueError, match="gradients must match log_probs"):
        ext.sample_onehot_backward(torch.zeros(3, 4), torch.zeros(3, 5), None, 0.0)


def test_non_finite_logits_do_not_crash():
    logits = torch.tensor([[0.0, float("nan"), 1.0], [float("inf"), 0.0, 0.0]])
    sample, log_probs = dr.sample_onehot(logits, 0.01)
    assert torch.all(sample.sum(-1) == 1)   # still one class per row
    assert not torch.isfinite(log_probs).all()   # and the NaN shows in log p


def test_rssm_and_actor_sample_through_the_kernel():
    rssm = dr.RSSM(action_dim=3, embed_dim=7, deter=24, stoch=4, classes=5, hidden=20)
    state = {k: v.detach() for k, v in rssm.initial(6).items()}
    action = torch.randn(6, 3)
    torch.manual_seed(2)
    a = rssm.imagine_step(state, action)
    torch.manual_seed(2)
    b = rssm.imagine_step(state, action)
    assert torch.equal(a["stoch"], b["stoch"])
    # Same values as a sample from the stats with the same seed.
    raw = rssm.img_out(a["deter"]).reshape(6, 4, 5)
    torch.manual_seed(2)
    stoch, log_probs = dr.sample_onehot(raw, rssm.unimix)
    assert torch.equal(stoch, a["stoch"])
    torch.testing.assert_close(log_probs, a["logits"])
    torch.testing.assert_close(a["logits"], torch.log(reference_probs(raw, rssm.unimix)))
    actor = dr.Actor(rssm.feat_size, 3, discrete=True, units=8, layers=1)
    dist = actor(rssm.feature(a))
    torch.manual_seed(4)
    s1 = dist.rsample()
    torch.manual_seed(4)
    s2, _ = dr.sample_onehot(actor.net(rssm.feature(a)), actor.unimix)
    assert torch.equal(s1, s2)


def plain_gru(cell, x, state):
    """GRUCell's forward as plain operations (autograd keeps everything)."""
    parts = cell.norm(cell.linear(torch.cat([x, state], -1)))
    return _gates(parts, state, cell.size, cell.update_bias)


@given(batch=st.integers(1, 6), size=st.integers(1, 9), seed=st.integers(0, 1000))
@settings(max_examples=20, deadline=None)
def test_lean_gru_has_the_gradients_of_the_plain_one(batch, size, seed):
    torch.manual_seed(seed)
    cell = dr.GRUCell(5, size).double()
    with torch.no_grad():
        cell.norm.weight.uniform_(0.5, 1.5)
        cell.norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(batch, 5, dtype=torch.float64, requires_grad=True)
    h = torch.randn(batch, size, dtype=torch.float64, requires_grad=True)
    w = torch.randn(batch, size, dtype=torch.float64)
    params = [x, h, *cell.parameters()]
    out = cell(x, h)
    torch.testing.assert_close(out, plain_gru(cell, x, h), rtol=0, atol=0)
    ours = torch.autograd.grad((out * w).sum(), params)
    reference = torch.autograd.grad((plain_gru(cell, x, h) * w).sum(), params)
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a, b)
    with torch.no_grad():
        torch.testing.assert_close(cell(x, h), out.detach(), rtol=0, atol=0)


def test_lean_gru_saves_less():
    cell = dr.GRUCell(64, 64)
    x, h = torch.randn(32, 64), torch.randn(32, 64)

    def saved(fn):
        total = {}

        def pack(t):
            if not isinstance(t, torch.nn.Parameter):
                total[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn()
        return sum(total.values())

    # linear input (x, h) + pre-activations + h + statistics, against all the gates too
    assert saved(lambda: cell(x, h)) < 0.55 * saved(lambda: plain_gru(cell, x, h))


def dense_img_in(rssm, stoch, action):
    """img_in's linear layer as the plain product over [stoch, action]."""
    flat = stoch.reshape(*stoch.shape[:-2], rssm.stoch_size)
    return rssm.img_in[0](torch.cat([flat, action], -1))


@given(batch=st.integers(1, 7), seed=st.integers(0, 1000))
@settings(max_examples=15, deadline=None)
def test_one_hot_input_layer_equals_the_dense_product(batch, seed):
    torch.manual_seed(seed)
    rssm = dr.RSSM(action_dim=3, embed_dim=7, deter=24, stoch=4, classes=5, hidden=20).double()
    logits = torch.randn(batch, 4, 5, dtype=torch.float64, requires_grad=True)
    stoch, _ = dr.sample_onehot(logits, 0.01)             # exactly one-hot, with ST gradient
    action = torch.randn(batch, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(batch, 20, dtype=torch.float64)
    params = [logits, action, rssm.img_in[0].weight]
    ours = rssm._img_in_linear(stoch, action)
    reference = dense_img_in(rssm, stoch, action)
    torch.testing.assert_close(ours, reference)
    for a, b in zip(torch.autograd.grad((ours * w).sum(), params, retain_graph=True),
                    torch.autograd.grad((reference * w).sum(), params)):
        torch.testing.assert_close(a, b)
    # Latents that are not one-hot take the dense product.
    soft = torch.softmax(logits, -1)
    torch.testing.assert_close(rssm._img_in_linear(soft, action), dense_img_in(rssm, soft, action),
                               rtol=0, atol=0)
    # A whole imagination step: the same next state as one computed with the dense product.
    state = {"deter": torch.randn(batch, 24, dtype=torch.float64), "stoch": stoch.detach()}
    torch.manual_seed(seed)
    nxt = rssm.imagine_step(state, action.detach())
    x = rssm.img_in[2](rssm.img_in[1](dense_img_in(rssm, state["stoch"], action.detach())))
    torch.testing.assert_close(nxt["deter"], rssm.gru(x, state["deter"]))


def test_cached_latent_columns_follow_weight_updates():
    rssm = dr.RSSM(action_dim=3, embed_dim=7, deter=24, stoch=4, classes=5, hidden=20)
    stoch = torch.nn.functional.one_hot(torch.randint(0, 5, (6, 4)), 5).float()
    action = torch.randn(6, 3)
    with torch.no_grad():
        first = rssm._img_in_linear(stoch, action)
        torch.testing.assert_close(first, dense_img_in(rssm, stoch, action))
        rssm.img_in[0].weight.mul_(2.0)          # an optimiser step writes in place
        torch.testing.assert_close(rssm._img_in_linear(stoch, action), 2.0 * first)
    rssm.load_state_dict({k: v * 0.5 for k, v in rssm.state_dict().items()})
    with torch.no_grad():
        torch.testing.assert_close(rssm._img_in_linear(stoch, action),
                                   dense_img_in(rssm, stoch, action))
