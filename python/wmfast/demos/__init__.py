"""Demos run by ``wmfast demo NAME``: each takes its command-line arguments, returns an exit code."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def _dreamer_cartpole(argv: Sequence[str]) -> int:
    from wmfast.demos.dreamer_cartpole import main

    return main(argv)


def _frozenlake(argv: Sequence[str]) -> int:
    from wmfast.demos.frozenlake import main

    return main(argv)


def _muzero_cartpole(argv: Sequence[str]) -> int:
    from wmfast.demos.muzero_cartpole import main

    return main(argv)


def _muzero_tictactoe(argv: Sequence[str]) -> int:
    from wmfast.demos.muzero_tictactoe import main

    return main(argv)


def _pendulum(argv: Sequence[str]) -> int:
    from wmfast.demos.pendulum import main

    return main(argv)


def _stochastic_2048(argv: Sequence[str]) -> int:
    from wmfast.demos.stochastic_2048 import main

    return main(argv)


def _stochastic_muzero_coin(argv: Sequence[str]) -> int:
    from wmfast.demos.stochastic_muzero_coin import main

    return main(argv)


def _sampled_muzero_pendulum(argv: Sequence[str]) -> int:
    from wmfast.demos.sampled_muzero_pendulum import main

    return main(argv)


def _sampled_pendulum(argv: Sequence[str]) -> int:
    from wmfast.demos.sampled_pendulum import main

    return main(argv)


DEMOS: dict[str, Callable[[Sequence[str]], int]] = {
    "dreamer-cartpole": _dreamer_cartpole,
    "frozenlake": _frozenlake,
    "muzero-cartpole": _muzero_cartpole,
    "muzero-tictactoe": _muzero_tictactoe,
    "pendulum": _pendulum,
    "sampled-muzero-pendulum": _sampled_muzero_pendulum,
    "sampled-pendulum": _sampled_pendulum,
    "stochastic-2048": _stochastic_2048,
    "stochastic-muzero-coin": _stochastic_muzero_coin,
}
