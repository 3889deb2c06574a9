"""Labels (operators' and the outcomes' own) and the versioned weights tuning writes (docs/score.md)."""
from __future__ import annotations

from pathlib import Path

from engine.events import format_ts
from engine.score.labels import WINDOW_S, AutoLabeler, LabelFile, effective, label_record
from engine.score.weights import FLEET, WeightStore

T0 = 1_790_000_000.0
DEFAULTS = {"success_rate": 0.4, "latency": 0.2, "stability": 0.2, "resource": 0.2}


def ev(type_: str, at: float, agent: str = "coder", id_: str | None = None, **data) -> dict:
    return {"id": id_ or f"{type_}-{at}", "type": type_, "agent": agent, "ts": format_ts(at), "data": data}


def degraded(at: float, agent: str = "coder", id_: str = "deg") -> dict:
    return ev("score.degraded", at, agent, id_, score=0.2, components={"success_rate": 0.1, "latency": 1.0})


def test_a_degradation_followed_by_a_problem_of_another_kind_is_a_true_alarm():
    labeler = AutoLabeler(lambda: T0)
    labeler.fold(degraded(T0))
    labeler.fold(ev("problem.opened", T0 + 5, kind="score-degraded"))  # its own problem: no evidence
    labeler.fold(ev("problem.opened", T0 + 120, kind="agent-down"))
    assert labeler.due(T0 + WINDOW_S - 1) == []  # not before its window has passed
    [label] = labeler.due(T0 + WINDOW_S)
    assert label["label"] is True and label["source"] == "auto" and label["event"] == "deg"
    assert label["components"]["success_rate"] == 0.1
    assert labeler.due(T0 + 2 * WINDOW_S) == []  # decided once


def test_a_degradation_with_nothing_wrong_around_it_is_a_false_alarm_and_one_with_a_fault_says_nothing():
    labeler = AutoLabeler(lambda: T0)
    labeler.fold(ev("agent.task_done", T0 - 60, "analyst", ok=False))  # a failure before its degradation
    labeler.fold(degraded(T0, "analyst", "deg-a"))
    labeler.fold(degraded(T0, "coder", "deg-c"))
    labeler.fold(ev("problem.opened", T0 + WINDOW_S + 60, kind="agent-down"))  # outside the window
    labels = labeler.due(T0 + WINDOW_S)
    assert [(label["agent"], label["label"]) for label in labels] == [("coder", False)]


def test_labels_survive_a_torn_last_line_and_the_operator_always_wins(tmp_path: Path):
    file = LabelFile(tmp_path)
    auto = label_record(agent="coder", at=T0, label=False, source="auto", components={}, event="deg", now=T0)
    operator = label_record(agent="coder", at=T0, label=True, source="operator", components={}, event="deg", now=T0)
    missed = label_record(agent="coder", at=T0 + 50, label=True, source="operator", components={}, now=T0)
    file.append([operator])
    file.append([auto, missed])  # the auto label comes later: it still does not override the operator
    with open(file.path, "ab") as handle:
        handle.write(b'{"agent": "coder", "lab')  # a crash mid-append
    loaded = file.load()
    assert len(loaded) == 3
    chosen = effective(loaded)
    assert sorted((str(label["event"]), label["label"], label["source"]) for label in chosen) == \
        [("None", True, "operator"), ("deg", True, "operator")]


def test_weight_versions_record_before_and_after_and_revert_restores_exactly(tmp_path: Path):
    store = WeightStore(tmp_path, DEFAULTS)
    store.load()
    assert store.weights_of("coder") == DEFAULTS
    tuned = {"success_rate": 0.3, "latency": 0.3, "stability": 0.2, "resource": 0.2}
    fleet = {"success_rate": 0.35, "latency": 0.25, "stability": 0.2, "resource": 0.2}
    version = store.apply({"coder": {"before": DEFAULTS, "after": tuned, "metrics_before": {"f1": 0.5},
                                     "metrics_after": {"f1": 0.8}, "reason": "12 labels"},
                           FLEET: {"before": None, "after": fleet, "reason": "40 labels"},
                           "analyst": {"before": DEFAULTS, "after": DEFAULTS, "reason": "3 labels, 10 needed"}}, T0)
    assert version == 1
    again = WeightStore(tmp_path, DEFAULTS)
    again.load()
    assert again.weights_of("coder") == tuned and again.weights_of("analyst") == fleet
    assert list(again.history[-1]["changes"]) == ["coder", FLEET]  # the unchanged agent is no change
    undone = again.revert()
    assert undone is not None and undone["version"] == 1
    assert again.weights_of("coder") == DEFAULTS and again.version == 0 and again.revert() is None
    third = WeightStore(tmp_path, DEFAULTS)
    third.load()
    assert third.weights_of("coder") == DEFAULTS and third.fleet is None


def test_a_damaged_weights_file_means_the_defaults(tmp_path: Path):
    store = WeightStore(tmp_path, DEFAULTS)
    store.path.parent.mkdir(parents=True)
    store.path.write_text("{not json")
    store.load()
    assert store.weights_of("coder") == DEFAULTS


def test_a_tuning_run_moves_only_labelled_agents_within_bounds_and_a_dry_run_writes_nothing(tmp_path: Path):
    from engine.config import load_embedded
    from engine.score.tuner import tuning_run

    config = load_embedded().raw["score"]
    slow = {"success_rate": 0.3, "latency": 0.0, "stability": 0.5, "resource": 0.5}  # real, scored 0.32: missed
    noisy = {"success_rate": 0.3, "latency": 1.0, "stability": 0.5, "resource": 0.0}  # not real, scored 0.42
    records = [label_record(agent="coder", at=T0 + n, label=n % 2 == 0, components=slow if n % 2 == 0 else noisy,
                            source="operator", event=f"e{n}", now=T0) for n in range(12)]
    store = WeightStore(tmp_path, config["weights"])
    dry = tuning_run(store, records, ["coder", "analyst"], config, dry_run=True, now=T0)
    assert dry["version"] == 0 and not store.path.exists()
    report = tuning_run(store, records, ["coder", "analyst"], config, dry_run=False, now=T0)
    coder = next(a for a in report["agents"] if a["agent"] == "coder")
    analyst = next(a for a in report["agents"] if a["agent"] == "analyst")
    assert coder["after"]["latency"] > coder["before"]["latency"] and coder["after"]["resource"] < 0.2
    assert all(abs(coder["after"][k] - coder["before"][k]) <= 0.1 + 1e-9 and coder["after"][k] >= 0.05
               for k in coder["before"])
    assert abs(sum(coder["after"].values()) - 1) < 1e-9
    assert coder["metrics_after"]["f1"] > coder["metrics_before"]["f1"]
    assert analyst["labels"] == 0 and "needed" in analyst["reason"]
    assert report["version"] == 1 and store.weights_of("coder") == coder["after"]


def test_a_label_appended_after_a_torn_line_is_read_back_and_bad_records_are_skipped(tmp_path: Path):
    file = LabelFile(tmp_path)
    file.path.parent.mkdir(parents=True)
    file.path.write_bytes(b'{"agent": "coder", "at": "x", "lab')  # the engine died mid-append
    record = label_record(agent="coder", at=T0, label=True, source="operator", components={}, event="d", now=T0)
    file.append([record])
    with open(file.path, "ab") as handle:
        handle.write(b'{"agent": "coder", "at": "2026-01-01T00:00:00Z", "label": "yes"}\n')  # not a boolean
    assert [r["event"] for r in file.load()] == ["d"]


def test_after_a_restart_a_degradation_already_labelled_is_not_labelled_again():
    labeler = AutoLabeler(lambda: T0)
    labeler.known = {"deg"}
    labeler.fold(degraded(T0))
    assert labeler.due(T0 + WINDOW_S) == []


def test_agents_following_the_fleet_keep_no_entry_and_revert_brings_back_exactly_what_was(tmp_path: Path):
    from engine.config import load_embedded
    from engine.score.tuner import tuning_run

    config = load_embedded().raw["score"]
    slow = {"success_rate": 0.3, "latency": 0.0, "stability": 0.5, "resource": 0.5}
    noisy = {"success_rate": 0.3, "latency": 1.0, "stability": 0.5, "resource": 0.0}
    records = [label_record(agent=f"a{n % 6}", at=T0 + n, label=n % 2 == 0, components=slow if n % 2 == 0 else noisy,
                            source="operator", event=f"e{n}", now=T0) for n in range(12)]  # 2 labels each: the fleet's
    store = WeightStore(tmp_path, config["weights"])
    report = tuning_run(store, records, [f"a{n}" for n in range(6)] + ["idle"], config, dry_run=False, now=T0)
    assert report["fleet"]["scope"] == "own" and store.fleet == report["fleet"]["after"] != DEFAULTS
    assert store.agents == {} and store.weights_of("a1") == store.fleet == store.weights_of("idle")
    assert list(store.history[-1]["changes"]) == ["*"]  # one entry, not one per agent
    store.revert()
    again = WeightStore(tmp_path, config["weights"])
    again.load()
    assert again.fleet is None and again.agents == {} and again.weights_of("a1") == DEFAULTS
