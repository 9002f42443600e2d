"""wm.StochasticMCTS and wm.SampledMCTS with CPU wm.NativeModels and num_threads > 1: each search
thread searches its own shard of trees with its own model calls, as wm.MCTS does
(tests/test_native_planners.py). Results are the same for every thread count and equal the
Python-model search; Ctrl-C stops a sharded search; bad model outputs raise as before."""

import _thread
import threading

import pytest
import torch
import wmfast as wm
from torch import nn

A, C, LATENT = 3, 4, 8  # Stochastic MuZero: actions, chance outcomes, latent width
D = 2  # Sampled MuZero: action dimensions
B = 100  # trees: 3 threads get 32+ each (a search gives a thread at least 32 trees)


class StochasticMLP(nn.Module):
    """Stochastic MuZero's two functions as small MLPs (exportable as wm.NativeModels)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.afterstate = nn.Sequential(nn.Linear(LATENT + A, 32), nn.Tanh(),
                                        nn.Linear(32, LATENT))
        self.afterstate_heads = nn.Linear(LATENT, C + 1)
        self.state = nn.Sequential(nn.Linear(LATENT + C, 32), nn.Tanh(), nn.Linear(32, LATENT))
        self.state_heads = nn.Linear(LATENT, A + 2)

    def decision(self, latent, action):
        onehot = nn.functional.one_hot(action, A).to(latent.dtype)
        afterstate = torch.tanh(self.afterstate(torch.cat([latent, onehot], 1)))
        out = self.afterstate_heads(afterstate)
        return wm.Afterstate(afterstate, out[:, :C], out[:, C])

    def chance(self, afterstate, outcome):
        onehot = nn.functional.one_hot(outcome, C).to(afterstate.dtype)
        state = torch.tanh(self.state(torch.cat([afterstate, onehot], 1)))
        out = self.state_heads(state)
        return wm.Step(state, out[:, -1], out[:, :A], out[:, -2])


class BadChance(StochasticMLP):
    """A chance function whose value is NaN where the state's first entry is positive."""

    def chance(self, afterstate, outcome):
        step = super().chance(afterstate, outcome)
        value = torch.where(step.latent[:, 0] > 0, torch.full_like(step.value, float("nan")),
                            step.value)
        return wm.Step(step.latent, step.reward, step.logits, value)


class ContinuousMLP(nn.Module):
    """Sampled MuZero's recurrent function over continuous actions (a Gaussian policy)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.dynamics = nn.Sequential(nn.Linear(LATENT + D, 32), nn.Tanh(),
                                      nn.Linear(32, LATENT + 1))
        self.prediction = nn.Linear(LATENT, 2 * D + 1)

    def recurrent_inference(self, latent, action):
        y = self.dynamics(torch.cat([latent, action], -1))
        next_latent = torch.tanh(y[:, :LATENT])
        out = self.prediction(next_latent)
        policy = torch.cat([torch.tanh(out[:, :D]), out[:, D:2 * D].clamp(-2, 0)], -1)
        return wm.Step(latent=next_latent, reward=y[:, LATENT], logits=policy,
                       value=out[:, 2 * D])


class DiscreteMLP(nn.Module):
    """Sampled MuZero's recurrent function over 6 discrete actions."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.dynamics = nn.Sequential(nn.Linear(LATENT + 6, 32), nn.Tanh(),
                                      nn.Linear(32, LATENT + 1))
        self.prediction = nn.Linear(LATENT, 7)

    def recurrent_inference(self, latent, action):
        x = torch.cat([latent, nn.functional.one_hot(action, 6).to(latent.dtype)], -1)
        y = self.dynamics(x)
        next_latent = torch.tanh(y[:, :LATENT])
        out = self.prediction(next_latent)
        return wm.Step(next_latent, y[:, LATENT], out[:, :6], out[:, 6])


def _export(fn, action, cache):
    # One kernel thread per call, and a runner for each of up to 3 search threads.
    example = (torch.randn(4, LATENT), action)
    exported = wm.NativeModel.export(fn, example, cache_dir=cache, num_threads=1)
    return wm.NativeModel(exported.path, num_runners=3)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("native-cache")


@pytest.fixture(scope="module")
def stochastic(cache):
    model = StochasticMLP()
    index = torch.zeros(4, dtype=torch.long)
    return model, _export(model.decision, index, cache), _export(model.chance, index, cache)


def _root(batch, width, seed=3):
    g = torch.Generator().manual_seed(seed)
    return wm.Root(torch.randn(batch, LATENT, generator=g), torch.randn(batch, width, generator=g),
                   torch.randn(batch, generator=g))


def _stochastic(threads, **kwargs):
    return wm.StochasticMCTS(A, C, 40, seed=5, dirichlet_fraction=0.25, temperature=1.0,
                             num_threads=threads, **kwargs)


def test_stochastic_native_search_is_the_same_for_every_thread_count(stochastic):
    _, decision, chance = stochastic
    root = _root(B, A)
    results = {t: _stochastic(t).search((decision, chance), root) for t in (1, 2, 3)}
    one = results[1]
    for threads in (2, 3):
        out = results[threads]
        for field in ("action", "visit_counts", "policy", "root_value", "q_values"):
            assert torch.equal(getattr(out, field), getattr(one, field)), (threads, field)
        for field in ("node_values", "children_visits", "chance_children_visits", "is_chance",
                      "latents"):
            assert torch.equal(getattr(out.tree, field), getattr(one.tree, field)), field
        # Sharded: every thread made its own calls of the two functions.
        assert sum(out.model_calls) > sum(one.model_calls)


def test_stochastic_native_search_equals_the_python_model(stochastic):
    model, decision, chance = stochastic
    root = _root(B, A)
    with torch.no_grad():
        expected = _stochastic(1).search(model, root)
    for threads in (1, 3):
        out = _stochastic(threads).search((decision, chance), root)
        assert torch.equal(out.visit_counts, expected.visit_counts)
        assert torch.equal(out.action, expected.action)
        assert torch.equal(out.tree.is_chance, expected.tree.is_chance)
        torch.testing.assert_close(out.tree.node_values, expected.tree.node_values, rtol=1e-5,
                                   atol=1e-5)
        torch.testing.assert_close(out.q_values, expected.q_values, rtol=1e-5, atol=1e-5)


def test_stochastic_native_sharded_reuse_is_the_same_for_every_thread_count(stochastic):
    _, decision, chance = stochastic
    root, taken = _root(B, A), torch.arange(B) % A
    outs = []
    for threads in (1, 3):
        planner = _stochastic(threads)
        first = planner.search((decision, chance), root)
        # Trees whose reached state was never expanded start afresh from the root given.
        outs.append(planner.search((decision, chance), root, reuse=first, action_taken=taken,
                                   outcome_taken=torch.zeros(B, dtype=torch.long)))
    assert torch.equal(outs[0].visit_counts, outs[1].visit_counts)
    assert torch.equal(outs[0].tree.node_values, outs[1].tree.node_values)


def test_stochastic_native_bad_output_raises_for_every_thread_count(stochastic, cache):
    _, good_decision, good_chance = stochastic
    model = BadChance()
    index = torch.zeros(4, dtype=torch.long)
    decision, chance = _export(model.decision, index, cache), _export(model.chance, index, cache)
    root, taken, outcomes = _root(B, A), torch.arange(B) % A, torch.zeros(B, dtype=torch.long)
    for threads in (1, 3):
        planner = _stochastic(threads)
        first = planner.search((good_decision, good_chance), root)
        kept = first.tree.node_values.clone()
        with pytest.raises(ValueError, match="Step.value"):
            planner.search((decision, chance), root)
        with pytest.raises(ValueError, match="Step.value"):
            planner.search((decision, chance), root, reuse=first, action_taken=taken,
                           outcome_taken=outcomes)
        # The failed searches left the reused result as it was, and usable.
        assert torch.equal(first.tree.node_values, kept)
        again = planner.search((good_decision, good_chance), root, reuse=first,
                               action_taken=taken, outcome_taken=outcomes)
        assert int(again.visit_counts.sum()) >= B * 40  # kept visits and 40 new per tree


def test_stochastic_native_sharded_search_stops_on_ctrl_c(stochastic, ctrl_c):
    _, decision, chance = stochastic
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        wm.StochasticMCTS(A, C, 100_000, seed=0, num_threads=2).search((decision, chance),
                                                                      _root(96, A))
    timer.join()


@pytest.fixture(scope="module")
def continuous(cache):
    model = ContinuousMLP()
    return model, _export(model.recurrent_inference, torch.rand(4, D), cache)


def _sampled(threads, **kwargs):
    return wm.SampledMCTS(num_samples=6, num_simulations=30, action_dim=D, seed=3,
                          dirichlet_fraction=0.25, num_threads=threads, **kwargs)


def _identical(x, y):
    # Bit for bit; NaN (no such sample) equals NaN.
    torch.testing.assert_close(x, y, rtol=0, atol=0, equal_nan=True)


def _same(out, one):
    for field in ("index", "action", "actions", "visit_counts", "policy", "priors", "q_values",
                  "root_value"):
        _identical(getattr(out, field), getattr(one, field))
    for field in ("node_values", "children_visits", "children_actions", "latents"):
        _identical(getattr(out.tree, field), getattr(one.tree, field))


def test_sampled_native_search_is_the_same_for_every_thread_count(continuous):
    _, native = continuous
    root = _root(B, 2 * D)
    results = {t: _sampled(t).search(native, root) for t in (1, 2, 3)}
    for threads in (2, 3):
        _same(results[threads], results[1])


def test_sampled_native_discrete_search_is_the_same_for_every_thread_count(cache):
    model = DiscreteMLP()
    native = _export(model.recurrent_inference, torch.zeros(4, dtype=torch.long), cache)
    root = _root(B, 6)
    with torch.no_grad():
        expected = wm.SampledMCTS(num_samples=4, num_simulations=30, num_actions=6,
                                  seed=2).search(model, root)
    for threads in (1, 2, 3):
        out = wm.SampledMCTS(num_samples=4, num_simulations=30, num_actions=6, seed=2,
                             num_threads=threads).search(native, root)
        assert torch.equal(out.actions, expected.actions)
        assert torch.equal(out.visit_counts, expected.visit_counts)
        torch.testing.assert_close(out.q_values, expected.q_values, rtol=1e-5, atol=1e-5)


def test_sampled_native_search_equals_the_python_model(continuous):
    model, native = continuous
    root = _root(B, 2 * D)
    with torch.no_grad():
        expected = _sampled(1).search(model, root)
    for threads in (1, 3):
        out = _sampled(threads).search(native, root)
        assert torch.equal(out.actions, expected.actions)
        assert torch.equal(out.visit_counts, expected.visit_counts)
        assert torch.equal(out.action, expected.action)
        torch.testing.assert_close(out.q_values, expected.q_values, rtol=1e-5, atol=1e-5)


def test_sampled_native_sharded_reuse_is_the_same_for_every_thread_count(continuous):
    _, native = continuous
    root, taken = _root(B, 2 * D), torch.arange(B) % 6
    outs = []
    for threads in (1, 3):
        planner = _sampled(threads)
        first = planner.search(native, root)
        outs.append(planner.search(native, root, reuse=first, action_taken=taken))
    _same(outs[1], outs[0])


def test_sampled_native_sharded_search_stops_on_ctrl_c(continuous, ctrl_c):
    _, native = continuous
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        wm.SampledMCTS(num_samples=6, num_simulations=100_000, action_dim=D,
                       num_threads=2).search(native, _root(96, 2 * D))
    timer.join()
