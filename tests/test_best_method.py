"""Table 1's best CNN is chosen on validation Dice by the best-seed rule, whatever order the methods are
listed in (issue 18 1.2; paper III.C), and the study's compare job uses that choice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nnunet_recur.trainers.seeds import select_best_seed
from nnunet_recur.workflow import demo as d
from nnunet_recur.workflow.best_method import (
    BestMethodError,
    MethodScore,
    choose_best_method,
    method_score,
    read_best_method,
    write_best_method,
)
from nnunet_recur.workflow.graph import JobGraph


def _trained(model_dir: Path, metrics: list[float], monitor: str = "val_dice") -> Path:
    """A model folder whose folds recorded these best validation values, with `recur best-seed` run."""
    for fold, metric in enumerate(metrics):
        (model_dir / f"fold_{fold}").mkdir(parents=True, exist_ok=True)
        record = {"fold": fold, "seed": fold, "monitor": monitor, "best_metric": metric}
        (model_dir / f"fold_{fold}" / "recur_best.json").write_text(
            json.dumps({**record, "best_epoch": 3, "epochs_trained": 9})
        )
    select_best_seed(model_dir)
    return model_dir


def test_best_cnn_is_the_highest_validation_dice_whatever_the_method_order(tmp_path):
    random = _trained(tmp_path / "random", [0.41, 0.52])
    finetune = _trained(tmp_path / "finetune", [0.61, float("nan")])
    methods = [
        ("AI random", "nnUNetTrainerRecur", random),
        ("AI finetune", "nnUNetTrainerRecurFinetune", finetune),
    ]
    chosen = [
        write_best_method(tmp_path / f"best_{i}.json", order)
        for i, order in enumerate([methods, methods[::-1]])
    ]
    assert [c.label for c in chosen] == ["AI finetune", "AI finetune"]  # not the first listed
    record = json.loads((tmp_path / "best_0.json").read_text())
    assert record["best"] == "AI finetune" and read_best_method(tmp_path / "best_1.json") == "AI finetune"
    assert {m["label"]: (m["fold"], m["val_dice"]) for m in record["methods"]} == {
        "AI random": (1, 0.52),
        "AI finetune": (0, 0.61),
    }


def test_best_cnn_rule_ties_nan_and_refusals(tmp_path):
    tie_a = _trained(tmp_path / "a", [0.5])
    tie_b = _trained(tmp_path / "b", [0.5])
    scores = [method_score("B method", "T", tie_b), method_score("A method", "T", tie_a)]
    assert choose_best_method(scores).label == choose_best_method(scores[::-1]).label == "A method"
    nan = MethodScore("N", "T", 0, float("nan"))  # (`recur best-seed` refuses a method with only NaN seeds)
    assert choose_best_method([nan, scores[0]]).label == "B method"
    with pytest.raises(BestMethodError, match="no method has a finite"):
        choose_best_method([nan])
    loss = _trained(tmp_path / "loss", [0.2], monitor="val_loss")
    with pytest.raises(BestMethodError, match="not the validation Dice"):
        method_score("L", "T", loss)
    with pytest.raises(BestMethodError, match="run `recur best-seed` first"):
        method_score("M", "T", tmp_path / "missing")
    (tie_a / "fold_0" / "recur_best.json").write_text(
        json.dumps({"fold": 0, "seed": 0, "monitor": "val_dice", "best_metric": 0.9, "best_epoch": 1,
                    "epochs_trained": 2})
    )  # fmt: skip
    with pytest.raises(BestMethodError, match="changed after the seed selection"):
        method_score("A method", "T", tie_a)


def test_study_compare_passes_the_best_cnn_chosen_on_validation(tmp_path):
    env = {name: str(tmp_path / name) for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    cfg = d.DemoConfig(out=tmp_path / "out", epochs=3, seeds=2)
    jobs = d.build_jobs(cfg, env, d.resolve_trainers(3, TRAINERS))
    by_name = {j.name: j for j in jobs}
    graph = JobGraph(jobs)
    assert set(graph.deps["select_best_cnn"]) == {"select_ai_random", "select_ai_finetune"}
    assert "select_best_cnn" in graph.deps["compare"]
    lay = d.DemoPaths(cfg, env).layout()
    _trained(lay.model_dir("Dataset502_SynthRecur", "nnUNetTrainerRecur_3epochs"), [0.3, 0.2])
    _trained(lay.model_dir("Dataset502_SynthRecur", "nnUNetTrainerRecurFinetune_3epochs"), [0.1, 0.4])
    by_name["select_best_cnn"].action()
    assert all(p.is_file() for p in by_name["select_best_cnn"].resolved_outputs())
    (lay.report / "best.json").write_text(json.dumps({"percent": 40}))  # the SUVmax sweep's choice
    argv = by_name["compare"].resolved_commands()[0]
    assert argv[argv.index("--best") + 1] == "AI finetune"  # the first method is AI random


TRAINERS = [
    "nnUNetTrainerRecur_3epochs",
    "nnUNetTrainerRecurFinetune_3epochs",
    "nnUNetTrainerRecurPretrain_3epochs",
]
