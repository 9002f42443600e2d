"""Agents that drive gymnasium environments with wmfast planners."""

from wmfast.agents.dreamer import DreamerAgent
from wmfast.agents.muzero import MuZeroAgent
from wmfast.agents.tabular import TabularAgent

__all__ = ["DreamerAgent", "MuZeroAgent", "TabularAgent"]
