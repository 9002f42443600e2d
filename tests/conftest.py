import signal

import numpy as np
import pytest


def frozenlake_model(map_name: str = "8x8"):
    """(P as gymnasium's env.unwrapped.P, S, A) of slippery FrozenLake."""
    import gymnasium as gym

    env = gym.make("FrozenLake-v1", map_name=map_name, is_slippery=True)
    P = env.unwrapped.P
    return P, len(P), len(P[0])


def dense_true_model(P, S, A):
    """Continuation probabilities [S, A, S] and expected rewards [S, A] of a gymnasium P."""
    transitions = np.zeros((S, A, S))
    rewards = np.zeros((S, A))
    for s in range(S):
        for a in range(A):
            for p, s2, r, done in P[s][a]:
                if not done:
                    transitions[s, a, s2] += p
                rewards[s, a] += p * r
    return transitions, rewards


def reference_value_iteration(transitions, rewards, gamma, tol=1e-13, max_iters=1_000_000):
    """Textbook Jacobi value iteration in numpy."""
    values = np.zeros(transitions.shape[0])
    for _ in range(max_iters):
        q = rewards + gamma * transitions @ values
        updated = q.max(axis=1)
        if np.abs(updated - values).max() < tol:
            return updated, q
        values = updated
    raise AssertionError("reference value iteration did not converge")


@pytest.fixture
def frozenlake():
    return frozenlake_model()


@pytest.fixture
def ctrl_c():
    """Python's own Ctrl-C handler for tests that press Ctrl-C (``_thread.interrupt_main``).

    A process started in the background of a non-interactive shell inherits SIGINT ignored;
    Python then installs no handler, interrupt_main does nothing and a search waiting for Ctrl-C
    runs on (this hung a CI run launched that way).
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def pytest_addoption(parser):
    parser.addoption("--fuzz-long", action="store_true", default=False,
                     help="run the property-based fuzz suite (tests/fuzz) with a long budget "
                          "(300 examples per property, or $WMFAST_FUZZ_EXAMPLES)")
