"""wmfast.dreamer: RSSM shapes, KL balancing against torch.distributions, straight-through and
unimix categoricals, heads, return normalisation and the actor-critic losses."""

import numpy as np
import pytest
import torch
import wmfast as wm
from torch import distributions as D
from wmfast import dreamer as dr
from wmfast import transforms as T

SMALL = {"deter": 24, "hidden": 20, "units": 20, "layers": 1, "stoch": 4, "classes": 5}


def make_rssm(classes=5, seed=0):
    torch.manual_seed(seed)
    return dr.RSSM(action_dim=3, embed_dim=7, deter=24, stoch=4, classes=classes, hidden=20)


def test_config_defaults_and_validation():
    c = dr.Config()
    assert (c.stoch, c.classes, c.unimix, c.free_nats, c.dyn_scale, c.rep_scale) == (
        32, 32, 0.01, 1.0, 0.5, 0.1)
    assert c.gamma == 0.997 and c.feat_size == c.deter + 32 * 32
    assert dr.Config(convention="dreamerv3-2024").gamma == 1.0
    assert c.replace(discount=0.99).gamma == 0.99
    with pytest.raises(ValueError, match="Config.deter must be an int >= 1, got 0"):
        dr.Config(deter=0)
    with pytest.raises(ValueError, match="Config.classes must be 0"):
        dr.Config(classes=1)
    with pytest.raises(ValueError, match="Config.unimix must be a number in"):
        dr.Config(unimix=2.0)
    with pytest.raises(ValueError, match="Config.actor_grad must be"):
        dr.Config(actor_grad="both")
    with pytest.raises(ValueError, match="Config.convention must be one of"):
        dr.Config(convention="sheeprl")
    with pytest.raises(ValueError, match="Config.bins must be"):
        dr.Config(bins="linear")


@pytest.mark.parametrize("classes", [5, 0])
def test_rssm_shapes(classes):
    rssm = make_rssm(classes)
    stoch_shape = (4, 5) if classes else (4,)
    state = rssm.initial(6)
    assert state["deter"].shape == (6, 24) and state["stoch"].shape == (6, *stoch_shape)
    nxt = rssm.imagine_step(state, torch.randn(6, 3))
    assert nxt["deter"].shape == (6, 24) and nxt["stoch"].shape == (6, *stoch_shape)
    assert rssm.feature(nxt).shape == (6, rssm.feat_size)
    assert rssm.feat_size == 24 + (20 if classes else 4)
    post, prior = rssm.observe(torch.randn(9, 6, 7), torch.randn(9, 6, 3))
    for states in (post, prior):
        assert states["deter"].shape == (9, 6, 24)
        assert states["stoch"].shape == (9, 6, *stoch_shape)
        assert rssm.feature(states).shape == (9, 6, rssm.feat_size)
    torch.testing.assert_close(post["deter"], prior["deter"])
    if classes:
        assert post["logits"].shape == (9, 6, 4, 5)
        assert torch.all(post["stoch"].sum(-1) == 1) and set(post["stoch"].unique().tolist()) <= {
            0.0, 1.0}
    else:
        assert post["mean"].shape == (9, 6, 4) and bool((post["std"] >= 0.1).all())
    with pytest.raises(ValueError, match=r"actions must have shape \[9, 6, 3\]"):
        rssm.observe(torch.randn(9, 6, 7), torch.randn(9, 6, 2))
    with pytest.raises(ValueError, match=r"embed must have shape \[T, B, 7\]"):
        rssm.observe(torch.randn(9, 6, 8), torch.randn(9, 6, 3))


def test_rssm_is_first_resets_to_the_initial_state():
    rssm = make_rssm()
    embed, actions = torch.randn(4, 2, 7), torch.randn(4, 2, 3)
    is_first = torch.tensor([[1, 1], [0, 0], [1, 0], [0, 0]])
    post, _ = rssm.observe(embed, actions, is_first)
    # Row 2 of sequence 0 restarts: it must equal a fresh filter from the initial state.
    torch.manual_seed(5)
    fresh, _ = rssm.observe(embed[2:, :1], torch.zeros(2, 1, 3), torch.ones(2, 1))
    torch.testing.assert_close(post["deter"][2, 0], fresh["deter"][0, 0])


def test_rssm_drives_wm_imagine_with_dynamics_gradients():
    rssm = make_rssm()
    actor = dr.Actor(rssm.feat_size, 3, discrete=True, units=16, layers=1)
    post, _ = rssm.observe(torch.randn(3, 5, 7), torch.randn(3, 5, 3))
    start = {k: v[-1].detach() for k, v in post.items()}
    traj = wm.imagine(rssm.imagine_step, lambda s: actor(rssm.feature(s)).rsample(), start, 6)
    assert traj.states["stoch"].shape == (7, 5, 4, 5) and traj.actions.shape == (6, 5, 3)
    feat = rssm.feature(traj.states)
    feat.sum().backward()
    assert actor.net.out.weight.grad.abs().sum() > 0


def test_categorical_kl_terms_match_torch_distributions():
    rssm = make_rssm()
    post, prior = rssm.observe(torch.randn(5, 3, 7), torch.randn(5, 3, 3))
    loss, parts = rssm.kl_loss(post, prior, free_nats=0.0, dyn_scale=0.5, rep_scale=0.1)
    expected = D.kl_divergence(rssm.distribution(post), rssm.distribution(prior))
    assert expected.shape == (5, 3)
    torch.testing.assert_close(parts["kl"], expected.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss, 0.6 * expected, rtol=1e-5, atol=1e-6)
    # Independent(OneHotCategorical(probs=(1 - u) softmax + u / C)) from raw logits.
    assert bool((post["logits"].exp() >= 0.01 / 5 - 1e-7).all())


def test_gaussian_kl_terms_match_torch_distributions():
    rssm = make_rssm(classes=0)
    post, prior = rssm.observe(torch.randn(5, 3, 7), torch.randn(5, 3, 3))
    _, parts = rssm.kl_loss(post, prior, free_nats=0.0)
    expected = D.kl_divergence(D.Independent(D.Normal(post["mean"], post["std"]), 1),
                               D.Independent(D.Normal(prior["mean"], prior["std"]), 1))
    torch.testing.assert_close(parts["kl"], expected.detach(), rtol=1e-5, atol=1e-6)


def test_kl_balancing_routes_gradients_and_free_bits_clip():
    rssm = make_rssm()
    post, prior = rssm.observe(torch.randn(4, 3, 7), torch.randn(4, 3, 3))
    post_logits = post["logits"].detach().requires_grad_()
    prior_logits = prior["logits"].detach().requires_grad_()
    post2 = {**post, "logits": post_logits}
    prior2 = {**prior, "logits": prior_logits}
    _, parts = dr.kl_loss(rssm, post2, prior2, free_nats=0.0)
    (g_post,) = torch.autograd.grad(parts["dyn"].sum(), post_logits, allow_unused=True)
    assert g_post is None  # dyn trains the prior only
    (g_prior,) = torch.autograd.grad(parts["rep"].sum(), prior_logits, allow_unused=True)
    assert g_prior is None  # rep trains the representation only
    loss, parts = dr.kl_loss(rssm, post2, prior2, free_nats=1e6)
    torch.testing.assert_close(loss, torch.full((4, 3), 0.6e6))
    grads = torch.autograd.grad(loss.sum(), [post_logits, prior_logits])
    assert all(float(g.abs().max()) == 0.0 for g in grads)


def test_unimix_probabilities():
    logits = torch.randn(6, 32, generator=torch.Generator().manual_seed(0)) * 10
    probs = dr.unimix_probs(logits, 0.01)
    torch.testing.assert_close(probs, 0.99 * torch.softmax(logits, -1) + 0.01 / 32)
    torch.testing.assert_close(probs.sum(-1), torch.ones(6))
    assert float(probs.min()) >= 0.01 / 32 * (1 - 1e-6)
    dist = dr.OneHotStraightThrough(logits, 0.01)
    torch.testing.assert_close(dist.logits.exp(), probs)
    torch.testing.assert_close(dist.entropy(), D.Categorical(probs=probs).entropy())
    onehot = dist.sample()
    torch.testing.assert_close(dist.log_prob(onehot),
                               D.Categorical(probs=probs).log_prob(onehot.argmax(-1)))
    assert torch.equal(dr.unimix_probs(logits, 0.0), torch.softmax(logits, -1))


@pytest.mark.parametrize("unimix", [0.0, 0.01])
def test_straight_through_gradient_equals_the_softmaxs(unimix):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 4, 8, generator=g).requires_grad_()
    weights = torch.randn(5, 4, 8, generator=g)
    sample = dr.OneHotStraightThrough(logits, unimix).rsample()
    assert torch.all(sample.detach().sum(-1) == 1)
    (ours,) = torch.autograd.grad((sample * weights).sum(), logits)
    (softmax,) = torch.autograd.grad((dr.unimix_probs(logits, unimix) * weights).sum(), logits)
    torch.testing.assert_close(ours, softmax)
    if unimix == 0.0:
        (plain,) = torch.autograd.grad((torch.softmax(logits, -1) * weights).sum(), logits)
        torch.testing.assert_close(ours, plain)
    # The RSSM's categorical latents carry the same gradient.
    rssm = make_rssm()
    state = rssm.initial(2)
    state = {k: v.detach() for k, v in state.items()}
    nxt = rssm.imagine_step(state, torch.randn(2, 3))
    w = torch.randn_like(nxt["stoch"])
    grads = torch.autograd.grad((nxt["stoch"] * w).sum(), rssm.img_out[1].weight,
                                retain_graph=True)[0]
    expected = torch.autograd.grad((nxt["logits"].exp() * w).sum(), rssm.img_out[1].weight)[0]
    torch.testing.assert_close(grads, expected)


def test_sampling_frequencies_follow_the_unimix_probabilities():
    torch.manual_seed(3)
    logits = torch.tensor([[4.0, 0.0, -20.0]]).expand(40000, 3)
    dist = dr.OneHotStraightThrough(logits, 0.3)
    freq = dist.sample().mean(0)
    torch.testing.assert_close(freq, dist.probs[0], atol=0.01, rtol=0)
    assert float(freq[2]) > 0.08  # the mixed-in uniform part reaches the -20 logit


def test_heads_start_at_zero_and_learn_two_hot_targets():
    for layout in ("symlog_linear", "symexp"):
        head = dr.TwoHotHead(6, T.bins(layout), units=8, layers=1)
        assert torch.equal(head.predict(torch.randn(3, 6)), torch.zeros(3))
        logits = torch.randn(3, 255)
        target = torch.tensor([1.0, -5.0, 30.0])
        expected = -(T.two_hot(target, head.bins) * torch.log_softmax(logits, -1)).sum(-1)
        torch.testing.assert_close(head.loss_from_logits(logits, target), expected)
    cont = dr.ContinueHead(6, units=8, layers=1)
    feat = torch.randn(4, 6)
    torch.testing.assert_close(
        cont.loss(feat, torch.ones(4)),
        -torch.log(cont.predict(feat)))
    enc, dec = dr.MLPEncoder(3, 8, 1), dr.MLPDecoder(8, 3, 8, 1)
    obs = torch.randn(2, 5, 3)
    assert enc(obs).shape == (2, 5, 8) and dec.loss(enc(obs), obs).shape == (2, 5)


def test_critic_slow_copy_is_an_ema():
    critic = dr.Critic(6, T.bins("symexp"), units=8, layers=1)
    with torch.no_grad():
        for p in critic.head.parameters():
            p.add_(1.0)
    before = [p.clone() for p in critic.slow.parameters()]
    critic.update_slow(0.02)
    for slow, old, fast in zip(critic.slow.parameters(), before, critic.head.parameters()):
        torch.testing.assert_close(slow, 0.98 * old + 0.02 * fast)
        assert not slow.requires_grad


def test_return_normalizer_is_an_ema_of_percentiles():
    norm = dr.ReturnNormalizer(rate=0.1)
    rng = np.random.default_rng(0)
    low = high = 0.0
    for _ in range(5):
        returns = rng.normal(3.0, 10.0, size=(15, 16))
        offset, scale = norm(torch.tensor(returns, dtype=torch.float32))
        low = 0.9 * low + 0.1 * np.percentile(returns, 5)
        high = 0.9 * high + 0.1 * np.percentile(returns, 95)
        assert float(offset) == pytest.approx(low, rel=1e-5)
        assert float(scale) == pytest.approx(max(1.0, high - low), rel=1e-5)
    tiny = dr.ReturnNormalizer()
    _, scale = tiny(torch.full((4, 4), 0.01))
    assert float(scale) == 1.0  # never scales small returns up
    state = norm.state_dict()
    assert set(state) == {"low", "high"}
    with pytest.raises(ValueError, match="rate must be in"):
        dr.ReturnNormalizer(rate=0.0)


def test_actor_loss_reinforce_and_dynamics():
    g = torch.Generator().manual_seed(4)
    H, N = 5, 3
    logits = torch.randn(H, N, 4, generator=g).requires_grad_()
    policy = dr.OneHotStraightThrough(logits, 0.0)
    actions = policy.sample()
    returns = torch.randn(H, N, generator=g).requires_grad_()
    baseline = torch.randn(H, N, generator=g)
    weights = torch.rand(H, N, generator=g)
    loss, _metrics = dr.actor_loss(policy.log_prob(actions), policy.entropy(), returns, baseline,
                                  weights, torch.tensor(2.0), grad="reinforce",
                                  entropy_scale=0.1)
    expected = (weights * -(policy.log_prob(actions) * ((returns - baseline) / 2).detach()
                            + 0.1 * policy.entropy())).mean()
    torch.testing.assert_close(loss, expected)
    (g_returns,) = torch.autograd.grad(loss, returns, retain_graph=True, allow_unused=True)
    assert g_returns is None  # REINFORCE does not differentiate the return
    loss, _ = dr.actor_loss(policy.log_prob(actions), policy.entropy(), returns, baseline,
                            weights, 2.0, grad="dynamics", entropy_scale=0.0)
    (g_returns,) = torch.autograd.grad(loss, returns)
    torch.testing.assert_close(g_returns, -weights / 2 / (H * N))
    with pytest.raises(ValueError, match=r"baseline must have the shape of returns \[5, 3\]"):
        dr.actor_loss(policy.log_prob(actions), policy.entropy(), returns, baseline[:-1],
                      weights, 1.0)
    with pytest.raises(ValueError, match="grad must be"):
        dr.actor_loss(policy.log_prob(actions), policy.entropy(), returns, baseline, weights,
                      1.0, grad="both")


def test_critic_loss_with_slow_regulariser():
    bins = T.bins("symlog_linear")
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(4, 2, 255, generator=g)
    returns, slow = torch.randn(4, 2, generator=g) * 5, torch.randn(4, 2, generator=g)
    weights = torch.rand(4, 2, generator=g)
    log_probs = torch.log_softmax(logits, -1)
    expected = (weights * (-(T.two_hot(returns, bins) * log_probs).sum(-1)
                           - 0.5 * (T.two_hot(slow, bins) * log_probs).sum(-1))).mean()
    torch.testing.assert_close(dr.critic_loss(logits, returns, weights, bins, slow, 0.5), expected)
    with pytest.raises(ValueError, match="logits must have shape"):
        dr.critic_loss(logits[:3], returns, weights, bins)


def test_world_model_loss_and_a_full_imagination_update():
    config = dr.Config(**SMALL, convention="dreamerv3-2024")
    torch.manual_seed(6)
    model = dr.WorldModel(obs_dim=3, action_dim=2, config=config)
    T_, B = 6, 4
    obs, actions = torch.randn(T_, B, 3), torch.randn(T_, B, 2)
    terminated = torch.zeros(T_, B)
    terminated[-1, 0] = 1
    is_first = torch.zeros(T_, B)
    is_first[0] = 1
    loss, post, metrics = model.loss(obs, actions, torch.randn(T_, B), is_first, terminated)
    loss.backward()
    assert set(metrics) == {"kl", "recon", "reward", "cont", "model"}
    assert float(metrics["kl"]) >= 0
    torch.testing.assert_close(model.continue_target(terminated)[-1, 0], torch.tensor(0.0))
    torch.testing.assert_close(model.continue_target(terminated)[0, 0],
                               torch.tensor(1 - 1 / 333))
    with pytest.raises(ValueError, match=r"rewards must have shape \[6, 4\]"):
        model.loss(obs, actions, torch.randn(T_), is_first, terminated)

    # Imagination from the posteriors, heads after the loop, λ-returns and both losses.
    rssm = model.rssm
    actor = dr.Actor(rssm.feat_size, 2, discrete=False, units=16, layers=1)
    critic = dr.Critic(rssm.feat_size, model.bins, units=16, layers=1)
    start = {k: v.reshape(T_ * B, *v.shape[2:]).detach() for k, v in post.items()}
    traj = wm.imagine(rssm.imagine_step, lambda s: actor(rssm.feature(s)).rsample(), start,
                      config.horizon, grad="dynamics")
    feat = rssm.feature(traj.states)
    rewards, conts = model.reward.predict(feat), model.cont.predict(feat)
    values = critic.predict(feat)
    returns = wm.lambda_return(rewards, values, conts, config.discount, config.lam,
                               config.convention)
    weights = wm.lambda_return_weights(conts, config.discount, config.convention)
    assert returns.shape == weights.shape == (config.horizon, T_ * B)
    norm = dr.ReturnNormalizer()
    _, scale = norm(returns)
    policy = actor(feat[:-1].detach())
    loss, _ = dr.actor_loss(policy.log_prob(traj.actions), policy.entropy(), returns,
                            values[:-1].detach(), weights, scale, grad="dynamics")
    loss.backward()
    assert actor.net.out.weight.grad.abs().sum() > 0
    value_loss = dr.critic_loss(critic(feat[:-1].detach()), returns, weights, model.bins,
                                critic.predict_slow(feat[:-1].detach()))
    value_loss.backward()
    assert critic.head.net.out.weight.grad.abs().sum() > 0


def test_world_model_open_loop_follows_the_prior_under_the_real_actions():
    config = dr.Config(**SMALL)
    torch.manual_seed(7)
    model = dr.WorldModel(obs_dim=3, action_dim=2, config=config)
    T_, B, context = 7, 2, 3
    obs, actions = torch.randn(T_, B, 3), torch.randn(T_, B, 2)
    pred = model.open_loop(obs, actions, context)
    assert pred["obs"].shape == (T_ - context, B, 3)
    assert pred["reward"].shape == pred["cont"].shape == (T_ - context, B)
    # The prediction ignores the observations after the context, not the actions.
    later = obs.clone()
    later[context:] += 5.0
    torch.testing.assert_close(model.open_loop(later, actions, context)["obs"], pred["obs"])
    other = actions.clone()
    other[context:] += 1.0
    assert not torch.allclose(model.open_loop(obs, other, context)["obs"], pred["obs"])
    with pytest.raises(ValueError, match=r"context must be an int in \[1, T - 1\]"):
        model.open_loop(obs, actions, T_)
    with pytest.raises(ValueError, match="actions must have shape"):
        model.open_loop(obs, actions[:, :1], context)
