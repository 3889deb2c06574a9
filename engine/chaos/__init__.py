"""Chaos: faults injected for real against a running engine, and the tools that prove it heals (docs/chaos.md)."""
