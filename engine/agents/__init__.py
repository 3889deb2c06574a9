"""Agents the engine looks after (contract §7)."""
