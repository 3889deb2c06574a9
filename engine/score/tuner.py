"""One tuning run as `tune` and the weekly job make it: labels in, bounded weights out, versioned.

The fitting is engine/score/tuning.py (pure); this reads the labels that count (engine/score/labels.py),
asks for every agent known (scored, labelled or tuned before), writes a version unless `dry_run`, and says
per agent what its weights were before and after and why (docs/score.md, "Labels and tuning").
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from engine.events import parse_ts
from engine.score.labels import effective
from engine.score.tuning import AgentTuning, Label, tune
from engine.score.weights import FLEET, WeightStore, same


def labels_of(records: Iterable[dict[str, Any]]) -> list[Label]:
    """The labels tuning learns from: the effective ones that carry components."""
    out = []
    for record in effective(records):
        components = record.get("components")
        if not isinstance(components, dict) or not components \
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in components.values()):
            continue
        try:
            at = parse_ts(record["at"]).timestamp()
        except (KeyError, TypeError, ValueError):
            continue
        out.append(Label(record["agent"], at, bool(record["label"]), components, str(record.get("source")),
                         record.get("event")))
    return out


def tuning_run(store: WeightStore, records: Iterable[dict[str, Any]], agents: Iterable[str],
               config: Mapping[str, Any], *, dry_run: bool, now: float) -> dict[str, Any]:
    """Tune every agent in `agents` and every labelled one; a version is written unless `dry_run`.
    Blocking (the store writes): call it from a thread in async code."""
    labels = labels_of(records)
    tuning = config["tuning"]
    names = set(agents) | set(store.agents) | {label.agent for label in labels}
    result = tune({name: store.weights_of(name) for name in names}, store.fleet or store.defaults, labels,
                  threshold=config["degraded_below"], max_step=tuning["max_step"], floor=tuning["floor"],
                  min_labels=tuning["min_labels"])
    changes = {one.agent: _change(one) for one in (*result.agents.values(), result.fleet)}
    fleet = result.fleet
    stored = {who: change for who, change in changes.items()  # agents that follow the fleet follow "*"
              if (who == FLEET and fleet.scope == "own")
              or (who != FLEET and not (change["scope"] == "fleet" and same(change["before"], fleet.before)
                                        and same(change["after"], fleet.after)))}
    version = store.version if dry_run else store.apply(stored, now)
    return {"dry_run": dry_run, "version": version, "labels": len(labels),
            "agents": [{"agent": one.agent, **changes[one.agent]} for one in result.agents.values()],
            "fleet": changes[FLEET]}


def _change(one: AgentTuning) -> dict[str, Any]:
    return {"before": one.before, "after": one.after, "reason": one.reason, "scope": one.scope,
            "labels": one.labels, "metrics_before": one.metrics_before, "metrics_after": one.metrics_after}
