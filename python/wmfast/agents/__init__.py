"""Agents that drive gymnasium environments with wmfast planners."""

from wmfast.agents.dreamer import DreamerAgent
from wmfast.agents.tabular import TabularAgent

__all__ = ["DreamerAgent", "TabularAgent"]
