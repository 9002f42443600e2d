"""wmfast.NativeModel: AOTInductor export, the C++ runner, caching, save/load, errors."""

import dataclasses
import threading
import time

import numpy as np
import pytest
import torch
import wmfast as wm
from torch import nn


@dataclasses.dataclass
class StepOut:
    latent: torch.Tensor
    reward: torch.Tensor
    discount: torch.Tensor | None = None


class Dynamics(nn.Module):
    def __init__(self, latent=16, actions=5):
        super().__init__()
        self.actions = actions
        self.net = nn.Sequential(nn.Linear(latent + actions, 32), nn.ReLU(),
                                 nn.Linear(32, latent + 1))

    def step(self, latent, action):
        x = torch.cat([latent, nn.functional.one_hot(action, self.actions).float()], -1)
        y = self.net(x)
        return StepOut(y[:, :-1], y[:, -1])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = Dynamics()
    cache = tmp_path_factory.mktemp("native-cache")
    example = (torch.randn(4, 16), torch.randint(0, 5, (4,)))
    start = time.perf_counter()
    native = wm.NativeModel.export(model.step, example, cache_dir=cache)
    return model, native, cache, example, time.perf_counter() - start


@pytest.mark.parametrize("batch", [1, 4, 300])
def test_native_equals_eager_for_any_batch(exported, batch):
    model, native, *_ = exported
    latent, action = torch.randn(batch, 16), torch.randint(0, 5, (batch,))
    out, expected = native(latent, action), model.step(latent, action)
    assert isinstance(out, StepOut) and out.discount is None
    torch.testing.assert_close(out.latent, expected.latent, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.reward, expected.reward, rtol=1e-5, atol=1e-5)
    assert native.input_specs == ["float32[B, 16]", "int64[B]"]
    assert native.output_specs == ["float32[B, 16]", "float32[B]"]


def test_second_export_hits_the_cache(exported):
    model, native, cache, example, first_seconds = exported
    start = time.perf_counter()
    again = wm.NativeModel.export(model.step, example, cache_dir=cache)
    assert again.path == native.path
    assert time.perf_counter() - start < min(1.0, first_seconds / 5)
    with torch.no_grad():
        model.net[0].weight.add_(1.0)  # new weights: a new package
    changed = wm.NativeModel.export(model.step, example, cache_dir=cache)
    assert changed.path != native.path
    with torch.no_grad():
        model.net[0].weight.sub_(1.0)


def test_save_and_load_round_trip(exported, tmp_path):
    _, native, *_ = exported
    native.save(tmp_path / "dynamics.pt2")
    loaded = wm.NativeModel.load(tmp_path / "dynamics.pt2")
    latent, action = torch.randn(7, 16), torch.randint(0, 5, (7,))
    torch.testing.assert_close(loaded(latent, action).latent, native(latent, action).latent)


def test_numpy_and_list_inputs_are_taken_as_tensors(exported):
    model, native, *_ = exported
    latent = np.random.default_rng(0).normal(size=(3, 16))  # float64: taken as float32
    out = native(latent, [0, 4, 2])
    expected = model.step(torch.from_numpy(latent).float(), torch.tensor([0, 4, 2]))
    assert isinstance(out.latent, torch.Tensor) and out.latent.dtype == torch.float32
    torch.testing.assert_close(out.latent, expected.latent, rtol=1e-5, atol=1e-5)


def test_bad_inputs_are_named(exported):
    _, native, *_ = exported
    with pytest.raises(ValueError, match=r"input 0 has shape \[3, 15\]: expected float32\[B, 16\]"):
        native(torch.randn(3, 15), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"input 1 has dtype int32: expected int64"):
        native(torch.randn(3, 16), torch.zeros(3, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"input 1 has shape \[2\]: expected int64\[B\] with B = 3"):
        native(torch.randn(3, 16), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="takes 2 inputs, got 1"):
        native(torch.randn(3, 16))
    with pytest.raises(ValueError, match="is on meta: the model was exported for cpu"):
        native(torch.randn(3, 16, device="meta"), torch.zeros(3, dtype=torch.long))


def test_one_tensor_given_as_two_example_inputs_stays_two_inputs(tmp_path):
    """torch.export traces one tensor passed twice as one input; export copies it apart, so the
    package reads each input (it read the first for both before)."""
    def fn(a, b):
        return a - 2 * b

    x = torch.randn(3, 4)
    native = wm.NativeModel.export(fn, (x, x), cache_dir=tmp_path)
    a, b = torch.randn(5, 4), torch.randn(5, 4)
    torch.testing.assert_close(native(a, b), a - 2 * b)


def test_unexportable_model_raises_export_error(tmp_path):
    def data_dependent(x):
        if x.sum() > 0:  # Python control flow on values: torch.export cannot trace it
            return x * 2
        return x

    with pytest.raises(wm.ExportError, match="could not export.*Python callback"):
        wm.NativeModel.export(data_dependent, (torch.randn(4, 3),), cache_dir=tmp_path)
    with pytest.raises(wm.ExportError, match="must return a tensor"):
        wm.NativeModel.export(lambda x: "nope", (torch.randn(4, 3),), cache_dir=tmp_path)
    with pytest.raises(wm.ExportError, match="batch dimension first"):
        wm.NativeModel.export(lambda x: x.sum(), (torch.randn(4, 3),), cache_dir=tmp_path)
    with pytest.raises(ValueError, match="share a leading batch dimension"):
        wm.NativeModel.export(lambda x, y: x, (torch.randn(4, 3), torch.randn(5)),
                              cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="no native model package"):
        wm.NativeModel.load(tmp_path / "missing.pt2")


def test_running_releases_the_gil(exported):
    _, native, *_ = exported
    latent, action = torch.randn(4096, 16), torch.randint(0, 5, (4096,))
    # Another Python thread runs while a call is in progress (it counts only then). On a busy
    # machine that thread may not be scheduled for a while: call until it has run, up to 20 s.
    in_call, ticks, stop = [False], [0], threading.Event()

    def tick():
        while not stop.is_set():
            if in_call[0]:
                ticks[0] += 1

    thread = threading.Thread(target=tick)
    thread.start()
    deadline = time.monotonic() + 20.0
    try:
        while ticks[0] == 0 and time.monotonic() < deadline:
            in_call[0] = True
            native(latent, action)
            in_call[0] = False
    finally:
        stop.set()
        thread.join()
    assert ticks[0] > 0


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_export_runs_on_the_gpu(tmp_path):
    model = Dynamics().cuda()
    example = (torch.randn(4, 16, device="cuda"), torch.randint(0, 5, (4,), device="cuda"))
    native = wm.NativeModel.export(model.step, example, cache_dir=tmp_path)
    assert native.device.type == "cuda"
    latent, action = torch.randn(33, 16, device="cuda"), torch.randint(0, 5, (33,), device="cuda")
    out = native(latent, action)
    assert out.latent.device.type == "cuda"
    torch.testing.assert_close(out.latent, model.step(latent, action).latent, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="is on cpu"):
        native(latent.cpu(), action.cpu())
