"""Agents that drive gymnasium environments with wmfast planners."""

from wmfast.agents.tabular import TabularAgent

__all__ = ["TabularAgent"]
