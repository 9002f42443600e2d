"""NativeModel.load_weights: new weights in a compiled package without recompiling, and
self-play through a native search model (wmfast.muzero.native_selfplay)."""

import threading
import warnings

import pytest
import torch
import wmfast as wm
from torch import nn
from wmfast import muzero as mz
from wmfast.muzero.native_selfplay import NativeSearchModel
from wmfast.native import _fingerprint, _Forward

OBS, A, LATENT, SUPPORT = 4, 2, 64, 10


def random_network(seed):
    torch.manual_seed(seed)
    net = mz.MLPNetwork(OBS, A, LATENT, 64, SUPPORT)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.3)
    return net.eval()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # the thread count is part of a package's cache key: one package serves several tests
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("native-weights-cache")


@pytest.fixture(scope="module")
def exported(cache):
    # A fresh network: zero-initialised heads (uniform weights) and a 2-entry policy bias, which
    # Inductor would fold or inline without wmfast's compile options.
    torch.manual_seed(0)
    net = mz.MLPNetwork(OBS, A, LATENT, 64, SUPPORT).eval()
    model = mz.SearchModel(net, SUPPORT)
    latent = model.initial_inference(torch.randn(4, OBS)).latent
    native = wm.NativeModel.export(model.recurrent_inference,
                                   (latent, torch.randint(0, A, (4,))),
                                   cache_dir=cache, num_runners=3, num_threads=1)
    return net, native


def inputs(batch, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, LATENT, generator=g), torch.randint(0, A, (batch,), generator=g)


def assert_step_close(out, expected):
    for field in ("latent", "reward", "logits", "value"):
        torch.testing.assert_close(getattr(out, field), getattr(expected, field),
                                   rtol=1e-4, atol=1e-3, msg=field)


def test_every_weight_is_a_replaceable_constant(exported):
    net, native = exported
    used = {k for k in net.state_dict() if not k.startswith(("representation.", "consistency."))}
    assert set(native.weights) == {f"inner.network.{k}" for k in used}
    assert native.weights["inner.network.policy_head.3.bias"] == ((A,), "float32")


@pytest.mark.parametrize("as_state_dict", [False, True])
def test_loaded_weights_give_the_eager_outputs(exported, as_state_dict):
    _, native = exported
    for seed in (1, 2):
        net = random_network(seed)
        source = net.state_dict() if as_state_dict else net
        ignored = native.load_weights(source)
        assert ignored and all(k.startswith(("representation.", "consistency.")) for k in ignored)
        expected = mz.SearchModel(net, SUPPORT)
        for batch in (1, 5, 300):
            latent, action = inputs(batch, seed + batch)
            assert_step_close(native(latent, action), expected.recurrent_inference(latent, action))


def test_every_runner_gets_the_new_weights(exported):
    _, native = exported
    net = random_network(3)
    native.load_weights(net)
    expected = mz.SearchModel(net, SUPPORT)
    latent, action = inputs(64)
    want = expected.recurrent_inference(latent, action)
    results, errors = [], []

    def call():
        try:
            for _ in range(20):
                results.append(native(latent, action))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 60
    for out in results:
        assert_step_close(out, want)


def flat_root(model, batch, seed):
    """A root with uniform priors: the search's visits then follow the model's values."""
    root = model.initial_inference(
        torch.randn(batch, OBS, generator=torch.Generator().manual_seed(seed)))
    return wm.Root(root.latent, torch.zeros(batch, A), root.value)


def search(model, root, seed=0):
    mcts = wm.MCTS(A, num_simulations=24, dirichlet_fraction=0.0, seed=seed)
    return mcts.search(model, root)


def test_native_search_equals_the_eager_callback_search(exported):
    _, native = exported
    net = random_network(4)
    native.load_weights(net)
    eager = mz.SearchModel(net, SUPPORT)
    root = flat_root(eager, 8, 5)
    out, expected = search(native, root), search(eager, root)
    assert (out.visit_counts > 0).all()  # both actions searched
    torch.testing.assert_close(out.visit_counts, expected.visit_counts)
    torch.testing.assert_close(out.root_value, expected.root_value, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.q_values, expected.q_values, rtol=1e-4, atol=1e-4)


def test_a_search_sees_one_set_of_weights(exported):
    """Loads alternate between two networks while searches run in other threads: every search
    is the search of one of them, never a mix."""
    _, native = exported
    nets = [random_network(6), random_network(7)]
    root = flat_root(mz.SearchModel(nets[0], SUPPORT), 6, 8)

    def result(out):
        return torch.cat([out.visit_counts.float(), out.q_values, out.root_value[:, None]], 1)

    expected = []
    for net in nets:
        native.load_weights(net)
        expected.append(result(search(native, root)))
    assert not torch.equal(expected[0], expected[1])
    results, errors, stop = [], [], threading.Event()

    def searcher():
        try:
            while not stop.is_set():
                results.append(result(search(native, root)))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=searcher) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for i in range(12):
            native.load_weights(nets[i % 2])
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors and results
    for got in results:
        assert torch.equal(got, expected[0]) or torch.equal(got, expected[1])
    assert native.weights_version >= 14


def test_bad_weights_are_named_and_change_nothing(exported):
    _, native = exported
    net = random_network(9)
    native.load_weights(net)
    latent, action = inputs(3)
    before = native(latent, action)
    state = net.state_dict()

    bad = dict(state, **{"dynamics.0.weight": torch.zeros(64, 65)})
    with pytest.raises(ValueError, match=r"'dynamics\.0\.weight'.*\[64, 65\].*\[64, 66\]"):
        native.load_weights(bad)
    bad = dict(state, **{"value_head.3.bias": torch.zeros(21, dtype=torch.float64)})
    with pytest.raises(ValueError, match=r"'value_head\.3\.bias'.*float64.*float32"):
        native.load_weights(bad)
    missing = {k: v for k, v in state.items() if k != "reward_head.0.bias"}
    with pytest.raises(ValueError, match=r"'reward_head\.0\.bias'.*strict=False"):
        native.load_weights(missing)
    with pytest.raises(ValueError, match="none of source's"):
        native.load_weights({"nothing.here": torch.zeros(3)})
    with pytest.raises(TypeError, match="nn.Module or a state_dict"):
        native.load_weights([torch.zeros(3)])
    with pytest.raises(ValueError, match="no such weight"):  # the C++ check, names unfiltered
        native._native.load_weights({"inner.network.nope": torch.zeros(1)})
    after = native(latent, action)
    for field in ("latent", "reward", "logits", "value"):
        assert torch.equal(getattr(before, field), getattr(after, field))

    # strict=False keeps the missing ones
    native.load_weights(missing, strict=False)
    assert_step_close(native(latent, action),
                      mz.SearchModel(net, SUPPORT).recurrent_inference(latent, action))


def test_module_method_export_takes_its_state_dict(tmp_path):
    class Dynamics(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(8 + 3, 16), nn.ReLU(), nn.Linear(16, 9))
            self.register_buffer("scale", torch.ones(9), persistent=False)

        def step(self, latent, action):
            y = self.net(torch.cat([latent, nn.functional.one_hot(action, 3).float()], -1))
            y = y * self.scale
            return y[:, :-1], y[:, -1]

    torch.manual_seed(0)
    first, second = Dynamics(), Dynamics()
    with torch.no_grad():
        second.scale.fill_(2.0)
    example = (torch.randn(4, 8), torch.randint(0, 3, (4,)))
    native = wm.NativeModel.export(first.step, example, cache_dir=tmp_path)
    assert set(native.weights) == {"inner.net.0.weight", "inner.net.0.bias",
                                   "inner.net.2.weight", "inner.net.2.bias", "inner.scale"}
    assert native.load_weights(second) == []
    for got, want in zip(native(*example), second.step(*example)):
        torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="export the model again"):
        native.save(tmp_path / "copy.pt2")


def test_export_keyed_by_weight_names_reuses_the_package(cache):
    first, second = random_network(10), random_network(11)
    latent, action = inputs(4)
    paths = []
    for net in (first, second):
        model = mz.SearchModel(net, SUPPORT)
        native = wm.NativeModel.export(model.recurrent_inference, (latent, action),
                                       cache_dir=cache, num_runners=1, num_threads=1,
                                       cache_by_weights=False)
        paths.append(native.path)
        assert_step_close(native(latent, action), model.recurrent_inference(latent, action))
    assert paths[0] == paths[1]
    # Keyed by values (the default), other weights are another package: the network's weights
    # are part of the key even when the exported method's object is not a module.
    keyed = [_fingerprint(_Forward(mz.SearchModel(net, SUPPORT).recurrent_inference),
                          (latent, action), 1) for net in (first, second)]
    assert keyed[0] != keyed[1]


def test_native_search_model_follows_the_network(cache):
    net = random_network(12)
    model = mz.SearchModel(net, SUPPORT)
    native = NativeSearchModel(model, (OBS,), refresh_every=2,
                                                  cache_dir=cache, num_runners=1)
    latent, action = inputs(6)
    assert_step_close(native.native(latent, action), model.recurrent_inference(latent, action))
    old = model.recurrent_inference(latent, action)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05)
    assert not native.updated()          # one update of two: stale weights
    assert_step_close(native.native(latent, action), old)
    assert native.updated()              # second: refreshed
    assert_step_close(native.native(latent, action), model.recurrent_inference(latent, action))


def test_native_search_model_falls_back_with_a_warning(cache):
    class Unexportable(mz.MLPNetwork):
        def recurrent_inference(self, latent, action):
            if float(latent.sum()) > 0:   # data-dependent Python control flow
                latent = latent + 1
            return super().recurrent_inference(latent, action)

    model = mz.SearchModel(Unexportable(OBS, A, LATENT, 64, SUPPORT), SUPPORT)
    with pytest.warns(RuntimeWarning, match="native self-play is off"):
        assert NativeSearchModel.create(model, (OBS,), cache_dir=cache) is None


def test_agent_self_play_through_the_native_model(cache, monkeypatch):
    gym = pytest.importorskip("gymnasium")
    monkeypatch.setenv("WMFAST_CACHE", str(cache))
    config = mz.Config(num_envs=4, num_simulations=8, batch_size=16, min_replay=16,
                       updates_per_step=0.5, native_selfplay=True, native_refresh_every=3,
                       replay_capacity=2000, latent_dim=LATENT, hidden=64,
                       support_size=SUPPORT)
    from wmfast.agents import MuZeroAgent

    agent = MuZeroAgent(lambda: gym.make("CartPole-v1"), config=config)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback
        agent.train(env_steps=200, progress=False)
    native = agent._native_model
    assert native is not None and agent._selfplay.search_model is native.native
    assert agent.updates > 3
    # refreshed every 3 updates (and once at the start)
    assert native.native.weights_version == 1 + agent.updates // 3
    native.refresh()
    latent, action = inputs(5)
    assert_step_close(native.native(latent, action),
                      agent.model.recurrent_inference(latent, action))
