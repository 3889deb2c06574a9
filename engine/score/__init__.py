"""Per-agent health scores (docs/score.md): decayed windows over bus events, four components, weighted, with
hysteresis on the degraded state; labels of its alarms tune each agent's weights."""
