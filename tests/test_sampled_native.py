"""wm.SampledMCTS with a wm.NativeModel (continuous actions handed to the exported package as
float32 [B, D]): the same search as through the Python callback."""

import torch
import wmfast as wm
from torch import nn

D, LATENT = 2, 8


class ContinuousModel(nn.Module):
    def __init__(self):
        super().__init__()
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


def test_native_sampled_search_equals_callback_search(tmp_path):
    torch.manual_seed(0)
    model = ContinuousModel()
    example = (torch.randn(4, LATENT), torch.rand(4, D))
    native = wm.NativeModel.export(model.recurrent_inference, example, cache_dir=tmp_path)
    g = torch.Generator().manual_seed(1)
    root = wm.Root(torch.randn(37, LATENT, generator=g), torch.zeros(37, 2 * D),
                   torch.randn(37, generator=g))

    def planner():
        return wm.SampledMCTS(num_samples=6, num_simulations=30, action_dim=D, seed=3,
                              temperature=0.0)

    with torch.no_grad():
        callback = planner().search(model, root)
    result = planner().search(native, root)
    assert torch.equal(result.actions, callback.actions)
    assert torch.equal(result.visit_counts, callback.visit_counts)
    assert torch.equal(result.action, callback.action)
    torch.testing.assert_close(result.q_values, callback.q_values, rtol=1e-4, atol=1e-5)
