"""wm.imagine's C++ loop over NativeModels (REINFORCE-style, no grad), against its Python loop
over the same NativeModels (same draws: equal results), against an eager reference loop written
here (the same modules called from Python with the same noise: equal to float tolerance), and
with an RSSM step and actor exported by wmfast.dreamer.export_imagination."""

import _thread
import threading

import pytest
import torch
import wmfast as wm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from wmfast import dreamer as dr

H_DIM, Z_DIM, A_DIM = 4, 3, 2


class Step(nn.Module):
    """dynamics(h, z, action, noise [N, 3]) -> (h', z'): z grows by ~1.5x a step (so a huge
    start overflows to inf within a step or two)."""

    def __init__(self):
        super().__init__()
        self.h = nn.Linear(H_DIM + A_DIM, H_DIM)
        self.z = nn.Linear(H_DIM, Z_DIM)

    def forward(self, h, z, action, noise):
        h = torch.tanh(self.h(torch.cat([h, action], -1)))
        return h, z * (1.5 + 0.1 * torch.tanh(self.z(h))) + 0.1 * noise


class Policy(nn.Module):
    """policy(h, z, noise [N, A]) -> (action, logits)."""

    def __init__(self, actions=A_DIM):
        super().__init__()
        self.net = nn.Linear(H_DIM + Z_DIM, actions)

    def forward(self, h, z, noise):
        logits = self.net(torch.cat([h, torch.tanh(z)], -1))
        return torch.tanh(logits) + 0.1 * noise, logits


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    torch.manual_seed(0)
    cache = tmp_path_factory.mktemp("imagine-native")
    step, policy, wide = Step(), Policy(), Policy(actions=A_DIM + 1)
    n = 3
    h, z = torch.randn(n, H_DIM), torch.randn(n, Z_DIM)
    dynamics = wm.NativeModel.export(step, (h, z, torch.zeros(n, A_DIM), torch.rand(n, Z_DIM)),
                                     cache_dir=cache, num_threads=1)
    native_policy = wm.NativeModel.export(policy, (h, z, torch.rand(n, A_DIM)),
                                          cache_dir=cache, num_threads=1)
    native_wide = wm.NativeModel.export(wide, (h, z, torch.rand(n, A_DIM + 1)),
                                        cache_dir=cache, num_threads=1)
    return {"step": step, "policy": policy, "dynamics": dynamics, "native_policy": native_policy,
            "wide": native_wide}


def start_state(n, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return {"h": torch.randn(n, H_DIM, generator=gen), "z": torch.randn(n, Z_DIM, generator=gen)}


def reference(step, policy, start, horizon, generator):
    """The loop written out: each step the policy's noise, then the dynamics' (torch.rand)."""
    h, z = start["h"], start["z"]
    n = h.shape[0]
    hs, zs, actions, logits = [h], [z], [], []
    with torch.no_grad():
        for _ in range(horizon):
            action, logit = policy(h, z, torch.rand(n, A_DIM, generator=generator))
            h, z = step(h, z, action, torch.rand(n, Z_DIM, generator=generator))
            hs.append(h)
            zs.append(z)
            actions.append(action)
            logits.append(logit)
    return torch.stack(hs), torch.stack(zs), torch.stack(actions), torch.stack(logits)


def run(m, start, horizon, seed, loop="auto", **kwargs):
    gen = torch.Generator().manual_seed(seed)
    return wm.imagine(m["dynamics"], m["native_policy"], start, horizon, grad=None,
                      generator=gen, loop=loop, **kwargs)


def assert_same(a, b):
    assert a.horizon == b.horizon
    for key in a.states:
        assert torch.equal(a.states[key], b.states[key]), key
    assert torch.equal(a.actions, b.actions)
    assert len(a.policy_outputs) == len(b.policy_outputs)
    for x, y in zip(a.policy_outputs, b.policy_outputs):
        assert torch.equal(x, y)


def test_cpp_loop_equals_python_loop_and_reference(mlp):
    start = start_state(5)
    native = run(mlp, start, 6, seed=7)
    python = run(mlp, start, 6, seed=7, loop="python")
    assert_same(native, python)
    assert native.states["h"].shape == (7, 5, H_DIM)
    assert native.states["z"].shape == (7, 5, Z_DIM)
    assert native.actions.shape == (6, 5, A_DIM)
    assert [tuple(x.shape) for x in native.policy_outputs] == [(6, 5, A_DIM)]
    assert torch.equal(native.states["h"][0], start["h"])
    hs, zs, actions, logits = reference(mlp["step"], mlp["policy"], start, 6,
                                        torch.Generator().manual_seed(7))
    torch.testing.assert_close(native.states["h"], hs, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(native.states["z"], zs, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(native.actions, actions, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(native.policy_outputs[0], logits, rtol=1e-5, atol=1e-5)
    # Another seed, other draws.
    assert not torch.equal(run(mlp, start, 6, seed=8).actions, native.actions)


def test_default_generator_follows_manual_seed(mlp):
    start = start_state(4)
    torch.manual_seed(11)
    a = wm.imagine(mlp["dynamics"], mlp["native_policy"], start, 3, grad=None)
    torch.manual_seed(11)
    b = wm.imagine(mlp["dynamics"], mlp["native_policy"], start, 3, grad=None, loop="python")
    assert_same(a, b)


def test_one_native_model_runs_in_the_python_loop(mlp):
    """A Python policy with a native dynamics: the Python loop, the same draws for the
    dynamics' noise as the reference (whose policy noise is drawn separately)."""
    start = start_state(3)
    policy_noise = torch.Generator().manual_seed(5)
    noises = []

    def policy(state):
        noise = torch.rand(3, A_DIM, generator=policy_noise)
        noises.append(noise)
        return mlp["policy"](state["h"], state["z"], noise)[0]

    gen = torch.Generator().manual_seed(9)
    traj = wm.imagine(mlp["dynamics"], policy, start, 4, grad=None, generator=gen)
    assert traj.policy_outputs == ()
    gen = torch.Generator().manual_seed(9)
    h, z = start["h"], start["z"]
    with torch.no_grad():
        for t in range(4):
            action = mlp["policy"](h, z, noises[t])[0]
            torch.testing.assert_close(traj.actions[t], action)
            h, z = mlp["step"](h, z, action, torch.rand(3, Z_DIM, generator=gen))
            torch.testing.assert_close(traj.states["h"][t + 1], h, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(traj.states["z"][t + 1], z, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="loop='native' needs"):
        wm.imagine(mlp["dynamics"], policy, start, 4, grad=None, loop="native")


@pytest.mark.parametrize("loop", ["auto", "python"])
def test_horizon_edges(mlp, loop):
    start = start_state(2)
    one = run(mlp, start, 1, seed=3, loop=loop)
    assert one.states["h"].shape == (2, 2, H_DIM) and one.actions.shape == (1, 2, A_DIM)
    assert_same(one, run(mlp, start, 1, seed=3, loop="python"))
    gen = torch.Generator().manual_seed(3)
    before = gen.get_state()
    with pytest.raises(ValueError, match=r"horizon must be an int >= 1, got 0"):
        wm.imagine(mlp["dynamics"], mlp["native_policy"], start, 0, grad=None, generator=gen,
                   loop=loop)
    assert torch.equal(gen.get_state(), before)


def test_start_that_requires_grad_gives_plain_tensors(mlp):
    start = {key: value.requires_grad_() for key, value in start_state(3).items()}
    traj = run(mlp, start, 2, seed=1)
    assert not traj.states["h"].requires_grad and traj.states["h"].grad_fn is None
    assert not traj.actions.requires_grad
    assert_same(traj, run(mlp, start, 2, seed=1, loop="python"))


def test_batch_of_one(mlp):
    start = start_state(1)
    assert_same(run(mlp, start, 3, seed=2), run(mlp, start, 3, seed=2, loop="python"))


@pytest.mark.parametrize("loop", ["auto", "python"])
def test_bad_input_names_the_problem_and_changes_nothing(mlp, loop):
    start = start_state(3)
    gen = torch.Generator().manual_seed(0)
    before = gen.get_state()

    def imagine(dynamics, policy, state, **kwargs):
        kwargs.setdefault("grad", None)
        return wm.imagine(dynamics, policy, state, 3, generator=gen, loop=loop, **kwargs)

    dyn, pol = mlp["dynamics"], mlp["native_policy"]
    with pytest.raises(ValueError, match=r"start\['z'\] is float32\[3, 5\]: the dynamics "
                                         r"NativeModel's input 1 takes float32\[B, 3\]"):
        imagine(dyn, pol, {"h": start["h"], "z": torch.zeros(3, 5)})
    with pytest.raises(ValueError, match=r"start\['h'\] is float64\[3, 4\]"):
        imagine(dyn, pol, {"h": start["h"].double(), "z": start["z"]})
    with pytest.raises(ValueError, match="every start leaf must have the same batch size"):
        imagine(dyn, pol, {"h": start["h"], "z": start["z"][:2]})
    with pytest.raises(ValueError, match=r"policy must return actions that dynamics takes \(its "
                                         r"input 2: float32\[B, 2\]\), got float32\[B, 3\] at "
                                         r"step 0"):
        imagine(dyn, mlp["wide"], start)
    with pytest.raises(ValueError, match=r"dynamics must return a state with the structure of "
                                         r"start \(3 leaves\), got a NativeModel with 2 outputs"):
        imagine(dyn, pol, {**start, "extra": start["z"]})
    with pytest.raises(ValueError, match="grad must be None when dynamics or policy is a "
                                         "wmfast.NativeModel"):
        imagine(dyn, pol, start, grad="dynamics")
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        wm.imagine(dyn, pol, start, 3, grad=None, generator=3, loop=loop)
    with pytest.raises(ValueError, match="loop must be 'auto', 'python' or 'native'"):
        wm.imagine(dyn, pol, start, 3, grad=None, loop="cpp")
    assert torch.equal(gen.get_state(), before)


def test_generator_needs_a_native_model():
    with pytest.raises(ValueError, match="generator draws the noise inputs of NativeModels"):
        wm.imagine(lambda s, a: s, lambda s: s, torch.zeros(2, 1), 2, grad=None,
                   generator=torch.Generator())


@pytest.mark.parametrize("loop", ["auto", "python"])
def test_non_finite_states_name_the_step(mlp, loop):
    start = start_state(2)
    start["z"][1, 0] = 3e38   # z grows ~1.5x a step: inf at step 0's output
    with pytest.raises(ValueError, match=r"dynamics returned NaN or infinite values in "
                                         r"state\['z'\] at step 0 \(states\[1\]\)"):
        run(mlp, start, 3, seed=0, loop=loop)
    start = start_state(2)
    start["z"][0, 1] = 1e38   # inf after 2 to 3 steps
    with pytest.raises(ValueError, match=r"state\['z'\] at step (\d)") as native_error:
        run(mlp, start, 6, seed=0, loop=loop)
    assert "at step 0" not in str(native_error.value)
    start["h"][0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"start\['h'\] has NaN or infinite values"):
        run(mlp, start, 2, seed=0, loop=loop)
    # Without the check the values come back as they are.
    traj = run(mlp, start, 2, seed=0, loop=loop, check_finite=False)
    assert torch.isnan(traj.states["h"][0, 0, 0])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 9), horizon=st.integers(1, 7), seed=st.integers(0, 2**31 - 1))
def test_property_cpp_loop_equals_python_loop(mlp, n, horizon, seed):
    start = start_state(n, seed=seed % 1000)
    native = run(mlp, start, horizon, seed)
    python = run(mlp, start, horizon, seed, loop="python")
    assert_same(native, python)
    assert native.states["z"].shape == (horizon + 1, n, Z_DIM)
    assert native.actions.shape == (horizon, n, A_DIM)
    assert torch.equal(native.states["h"][0], start["h"])


def test_ctrl_c_stops_a_long_rollout(mlp, ctrl_c):
    start = {"h": torch.zeros(1, H_DIM), "z": torch.zeros(1, Z_DIM)}
    threading.Timer(0.3, _thread.interrupt_main).start()
    with pytest.raises(KeyboardInterrupt):
        wm.imagine(mlp["dynamics"], mlp["native_policy"], start, 2_000_000, grad=None,
                   check_finite=False)


# ----------------------------------------------------------------------------------------------
# An RSSM step and actor exported by wmfast.dreamer.export_imagination


@pytest.fixture(scope="module")
def rssm_models(tmp_path_factory):
    torch.manual_seed(0)
    rssm = dr.RSSM(3, embed_dim=5, deter=16, stoch=4, classes=6, hidden=16, unimix=0.01)
    actor = dr.Actor(rssm.feat_size, 3, discrete=True, units=16, layers=2)
    with torch.no_grad():
        actor.net.out.weight.normal_(0.0, 0.5)
    dynamics, policy = dr.export_imagination(rssm, actor, num_threads=1,
                                             cache_dir=tmp_path_factory.mktemp("rssm-native"))
    return rssm, actor, dynamics, policy


def rssm_start(rssm, n):
    with torch.no_grad():
        post, _ = rssm.observe(torch.randn(2, n, rssm.embed_dim),
                               torch.eye(rssm.action_dim)[torch.randint(rssm.action_dim, (2, n))])
    return {key: value[-1].contiguous() for key, value in post.items()}


def test_exported_rssm_step_matches_the_rssm(rssm_models):
    rssm, actor, dynamics, policy = rssm_models
    torch.manual_seed(3)
    state = rssm_start(rssm, 7)
    action = torch.eye(3)[torch.randint(3, (7,))]
    uniform = torch.rand(7, rssm.stoch)
    deter, stoch, log_probs = dynamics(state["deter"], state["stoch"], state["logits"], action,
                                       uniform)
    with torch.no_grad():
        expected = rssm.imagine_step(state, action, sample=False)
    torch.testing.assert_close(deter, expected["deter"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(log_probs, expected["logits"], rtol=1e-5, atol=1e-5)
    # Inverse CDF, one latent at a time: the first class whose cumulative probability
    # exceeds the uniform.
    probs = log_probs.exp()
    for i in range(7):
        for k in range(rssm.stoch):
            cdf = probs[i, k].cumsum(0)
            index = min(int((cdf <= uniform[i, k] * cdf[-1]).sum()), rssm.classes - 1)
            assert stoch[i, k].tolist() == torch.eye(rssm.classes)[index].tolist()
    action_out, action_log_probs = policy(state["deter"], state["stoch"], state["logits"],
                                          torch.rand(7, 1))
    with torch.no_grad():
        expected_logits = actor(rssm.feature(state)).logits
    torch.testing.assert_close(action_log_probs, expected_logits, rtol=1e-5, atol=1e-5)
    assert torch.equal(action_out.sum(-1), torch.ones(7))


def test_exported_rssm_draws_follow_the_probabilities(rssm_models):
    """Chi-square of the exported actor's draws from one state against its probabilities."""
    rssm, _, _, policy = rssm_models
    state = rssm_start(rssm, 1)
    n = 20000
    tiled = [value.expand(n, *value.shape[1:]).contiguous() for value in state.values()]
    actions, log_probs = policy(*tiled, torch.rand(n, 1, generator=torch.Generator().manual_seed(0)))
    counts = actions.sum(0)
    expected = log_probs[0].exp() * n
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 13.8   # chi-square, 2 degrees of freedom, p = 0.001


def test_rssm_cpp_loop_equals_python_loop(rssm_models):
    rssm, _, dynamics, policy = rssm_models
    start = rssm_start(rssm, 6)
    a = wm.imagine(dynamics, policy, start, 5, grad=None, generator=torch.Generator().manual_seed(4))
    b = wm.imagine(dynamics, policy, start, 5, grad=None,
                   generator=torch.Generator().manual_seed(4), loop="python")
    assert_same(a, b)
    assert set(a.states) == {"deter", "stoch", "logits"}
    assert a.states["stoch"].shape == (6, 6, rssm.stoch, rssm.classes)
    assert torch.equal(a.states["stoch"].sum(-1), torch.ones(6, 6, rssm.stoch))
    assert torch.equal(a.actions.sum(-1), torch.ones(5, 6))
    feat = rssm.feature(a.states)
    assert feat.shape == (6, 6, rssm.feat_size)
    # REINFORCE: the actor's log-probabilities recomputed on the stopped states are what the
    # exported policy returned.
    with torch.no_grad():
        recomputed = dr.Actor.forward(rssm_models[1], feat[:-1]).logits
    torch.testing.assert_close(recomputed, a.policy_outputs[0], rtol=1e-5, atol=1e-5)


def test_export_imagination_rejects_mismatched_models(rssm_models):
    rssm, _, _, _ = rssm_models
    with pytest.raises(TypeError, match="rssm must be a wmfast.dreamer.RSSM"):
        dr.export_imagination(object(), dr.Actor(4, 3, discrete=True))
    with pytest.raises(ValueError, match="actor must take the RSSM's feature"):
        dr.export_imagination(rssm, dr.Actor(rssm.feat_size + 1, 3, discrete=True))
    with pytest.raises(ValueError, match="actor must return the RSSM's action width 3"):
        dr.export_imagination(rssm, dr.Actor(rssm.feat_size, 4, discrete=True))


def test_exported_gaussian_rssm_and_continuous_actor(tmp_path):
    """Gaussian latents and a continuous actor: draws by Box-Muller from two uniforms."""
    torch.manual_seed(1)
    rssm = dr.RSSM(2, embed_dim=5, deter=12, stoch=3, classes=0, hidden=12)
    actor = dr.Actor(rssm.feat_size, 2, discrete=False, units=12, layers=1)
    dynamics, policy = dr.export_imagination(rssm, actor, num_threads=1, cache_dir=tmp_path)
    state = rssm_start(rssm, 5)
    assert list(state) == ["deter", "stoch", "mean", "std"]
    action = torch.rand(5, 2) * 2 - 1
    uniform = torch.rand(5, 2, rssm.stoch)
    deter, stoch, mean, std = dynamics(*state.values(), action, uniform)
    with torch.no_grad():
        expected = rssm.imagine_step(state, action, sample=False)
    for name, value in (("deter", deter), ("mean", mean), ("std", std)):
        torch.testing.assert_close(value, expected[name], rtol=1e-5, atol=1e-5)
    normal = torch.sqrt(-2.0 * torch.log(1.0 - uniform[:, 0])) * torch.cos(
        2.0 * torch.pi * uniform[:, 1])
    torch.testing.assert_close(stoch, mean + std * normal, rtol=1e-5, atol=1e-5)
    noise = torch.rand(5, 2, 2)
    act, act_mean, act_std = policy(*state.values(), noise)
    with torch.no_grad():
        dist = actor(rssm.feature(state))
    torch.testing.assert_close(act_mean, dist.mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(act_std, dist.std, rtol=1e-5, atol=1e-5)
    normal = torch.sqrt(-2.0 * torch.log(1.0 - noise[:, 0])) * torch.cos(2.0 * torch.pi * noise[:, 1])
    torch.testing.assert_close(act, act_mean + act_std * normal, rtol=1e-5, atol=1e-5)
    a = wm.imagine(dynamics, policy, state, 4, grad=None, generator=torch.Generator().manual_seed(2))
    b = wm.imagine(dynamics, policy, state, 4, grad=None,
                   generator=torch.Generator().manual_seed(2), loop="python")
    assert_same(a, b)
    assert [tuple(x.shape) for x in a.policy_outputs] == [(4, 5, 2), (4, 5, 2)]
