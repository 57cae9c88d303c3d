"""The demo's and cv's job graphs and the small decisions between jobs (no training here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nnunet_recur.workflow import cv as c
from nnunet_recur.workflow import demo as d
from nnunet_recur.workflow import study as st
from nnunet_recur.workflow.cpu_env import cpu_training_env
from nnunet_recur.workflow.graph import JobGraph

PUBLIC_TOOLS = {"recur", "recur-eval", "nnUNetv2_train", "nnUNetv2_predict"}
# what nnunet_recur.trainers.variants exports (kept literal: importing it needs torch and nnunetv2)
AVAILABLE = [
    "nnUNetTrainerRecur",
    "nnUNetTrainerRecurPretrain",
    "nnUNetTrainerRecur_2epochs",
    "nnUNetTrainerRecur_3epochs",
    "nnUNetTrainerRecur_10epochs",
    "nnUNetTrainerRecurFinetune",
    "nnUNetTrainerRecurFinetune_2epochs",
    "nnUNetTrainerRecurFinetune_3epochs",
    "nnUNetTrainerRecurFinetune_10epochs",
    "nnUNetTrainerRecurPretrain_2epochs",
    "nnUNetTrainerRecurPretrain_3epochs",
    "nnUNetTrainerRecur_shortPatience",
]
TRAINERS3 = d.resolve_trainers(3, AVAILABLE)


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        "nnUNet_raw": str(tmp_path / "raw"),
        "nnUNet_preprocessed": str(tmp_path / "pre"),
        "nnUNet_results": str(tmp_path / "res"),
    }


def test_demo_jobs_use_only_public_commands_in_paper_order(tmp_path):
    cfg = d.DemoConfig(out=tmp_path / "out", epochs=3, seeds=2)
    stages = d.build_jobs(cfg, _env(tmp_path), TRAINERS3)
    graph = JobGraph(stages)  # valid: known dependencies, no cycle
    names = [s.name for s in stages]
    assert names[0] == "synth_hecktor" and names[-4:] == [
        "compare", "dose_pattern", "training_curves", "predict_new_patient"]  # fmt: skip
    assert [n for n in names if "train_ai_random" in n] == ["train_ai_random_seed0", "train_ai_random_seed1"]
    assert names.index("pretrain") < names.index("train_ai_finetune_seed0")
    # the graph: fine-tuning waits for pre-training only, AI random for the data only, seeds run in parallel
    assert graph.deps["train_ai_finetune_seed1"] == ("pretrain",)
    assert graph.deps["train_ai_random_seed1"] == ("plan",)
    assert graph.deps["select_ai_random"] == ("train_ai_random_seed0", "train_ai_random_seed1")
    assert graph.deps["predict_ai_finetune"] == ("select_ai_finetune",)
    assert set(graph.deps["compare"]) == {"predict_ai_random", "predict_ai_finetune", "suvmax_predict",
                                          "gtv_predict", "select_best_cnn"}  # fmt: skip
    static = [s for s in stages if not callable(s.commands)]
    for stage in static:
        for argv in stage.resolved_commands():
            assert argv[0] in PUBLIC_TOOLS
    synth = stages[1].resolved_commands()[0]
    assert synth[:2] == ["recur", "synth"] and "--defects" in synth and "inhouse-dicom" in synth
    pretrain = stages[names.index("pretrain")].resolved_commands()[0]
    assert pretrain[:2] == ["nnUNetv2_train", "501"] and "nnUNetTrainerRecurPretrain_3epochs" in pretrain
    assert "--c" not in pretrain  # nothing to resume yet
    finetune = stages[names.index("train_ai_finetune_seed0")]
    argv = finetune.resolved_commands()[0]
    assert "-pretrained_weights" in argv and argv[3] == "0"
    assert argv[argv.index("-tr") + 1] == "nnUNetTrainerRecurFinetune_3epochs"
    assert "nnUNet_results" not in finetune.env  # one nnUNet_results for both methods
    # the best seed is the public command of the one rule (trainers.seeds.select_best_seed)
    select = stages[names.index("select_ai_finetune")].resolved_commands()[0]
    assert select == ["recur", "best-seed", "502", "-tr", "nnUNetTrainerRecurFinetune_3epochs"]


def test_predict_uses_the_fold_recur_best_seed_chose(tmp_path):
    cfg = d.DemoConfig(out=tmp_path / "out", epochs=3, seeds=2)
    env = _env(tmp_path)
    jobs = {j.name: j for j in d.build_jobs(cfg, env, TRAINERS3)}
    model = d.DemoPaths(cfg, env).layout().model_dir("Dataset502_SynthRecur", "nnUNetTrainerRecur_3epochs")
    with pytest.raises(st.StudyError, match="seed_selection.json"):
        jobs["predict_ai_random"].resolved_commands()
    model.mkdir(parents=True)
    (model / "seed_selection.json").write_text(json.dumps({"best_fold": 1}))
    argv = jobs["predict_ai_random"].resolved_commands()[0]
    assert argv[argv.index("-f") + 1] == "1" and argv[0] == "nnUNetv2_predict"
    # a fold retrained after its select job (issue 18 1.4): the predict job uses the recomputed best seed
    from nnunet_recur.trainers.seeds import select_best_seed

    def record(fold, metric):
        (model / f"fold_{fold}").mkdir(exist_ok=True)
        (model / f"fold_{fold}" / "recur_best.json").write_text(json.dumps(
            {"fold": fold, "seed": fold, "monitor": "val_dice", "best_metric": metric, "best_epoch": 1,
             "epochs_trained": 2}))  # fmt: skip

    record(0, 0.2)
    record(1, 0.5)
    assert select_best_seed(model).fold == 1
    record(0, 0.9)
    argv = jobs["predict_ai_random"].resolved_commands()[0]
    assert argv[argv.index("-f") + 1] == "0"
    assert json.loads((model / "seed_selection.json").read_text())["best_fold"] == 0


def test_interrupted_training_resumes_with_c_and_drops_pretrained_weights(tmp_path):
    cfg = d.DemoConfig(out=tmp_path / "out", epochs=3, seeds=1)
    env = _env(tmp_path)
    jobs = {s.name: s for s in d.build_jobs(cfg, env, TRAINERS3)}
    ft, rnd = jobs["train_ai_finetune_seed0"], jobs["train_ai_random_seed0"]
    # a retry before any checkpoint: AI random continues with --c (nnU-Net starts afresh), AI finetune
    # starts again from the pre-trained weights (nnU-Net refuses --c with -pretrained_weights)
    assert rnd.resolved_commands(retry=True)[0][-1] == "--c"
    ft_retry = ft.resolved_commands(retry=True)[0]
    assert "--c" not in ft_retry and "-pretrained_weights" in ft_retry
    fold = ft.progress_dir
    fold.mkdir(parents=True)
    (fold / "checkpoint_latest.pth").write_bytes(b"")
    for argv in (ft.resolved_commands()[0], ft.resolved_commands(retry=True)[0]):
        assert "--c" in argv and "-pretrained_weights" not in argv


def test_cpu_environment_reaches_every_nnunet_job_once(tmp_path, monkeypatch):
    for var in ("OMP_WAIT_POLICY", "MALLOC_MMAP_THRESHOLD_", "OMP_NUM_THREADS", "nnUNet_n_proc_DA"):
        monkeypatch.delenv(var, raising=False)
    env = _env(tmp_path)
    cpu = {j.name: j for j in d.build_jobs(d.DemoConfig(out=tmp_path / "a", epochs=3), env, TRAINERS3)}
    cuda = {j.name: j for j in d.build_jobs(d.DemoConfig(out=tmp_path / "b", epochs=3, device="cuda"), env,
                                            TRAINERS3)}  # fmt: skip
    nnunet = ["pretrain", "train_ai_random_seed0", "train_ai_finetune_seed0", "predict_ai_random",
              "predict_ai_finetune", "predict_new_patient"]  # fmt: skip
    for name in nnunet:
        assert cpu[name].env["OMP_WAIT_POLICY"] == "PASSIVE", name
        assert cpu[name].env["MALLOC_MMAP_THRESHOLD_"] == cpu_training_env()["MALLOC_MMAP_THRESHOLD_"]
        assert cpu[name].env["nnUNet_n_proc_DA"] == "0"
        assert "OMP_WAIT_POLICY" not in cuda[name].env, name
    assert not cpu["compare"].env and not cpu["plan"].env
    # a value the user exported wins (the job does not override it)
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    again = {j.name: j for j in d.build_jobs(d.DemoConfig(out=tmp_path / "c", epochs=3), env, TRAINERS3)}
    assert "OMP_WAIT_POLICY" not in again["pretrain"].env


def test_demo_ends_with_training_curves_and_recur_predict_on_the_first_test_patient(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = d.DemoConfig(out=Path("out"), epochs=3, seeds=2)
    env = _env(tmp_path)
    jobs = {j.name: j for j in d.build_jobs(cfg, env, TRAINERS3)}
    curves = jobs["training_curves"].resolved_commands()[0]
    assert curves[:2] == ["recur-eval", "training-curves"] and curves[-2:] == ["--out", "out/report"]
    runs = [curves[i + 1] for i, a in enumerate(curves) if a == "--run"]
    assert [r.split("=")[0] for r in runs] == ["pre-training", "AI random seed 0", "AI random seed 1",
                                               "AI finetune seed 0", "AI finetune seed 1"]  # fmt: skip
    assert runs[2].endswith("nnUNetTrainerRecur_3epochs__nnUNetRecurPlans__3d_recur/fold_1")
    assert {p.name for p in jobs["training_curves"].resolved_outputs()} == {
        "training_curves.png", "training_curves.csv", "training_curves.json"}  # fmt: skip

    predict = jobs["predict_new_patient"]
    with pytest.raises(OSError):  # the converter's report does not exist yet
        predict.resolved_commands()
    cases = Path("out/recur_reports/Dataset502_SynthRecur/cases.csv")
    cases.parent.mkdir(parents=True)
    cases.write_text("patient,case,status,role\nP01,SR_001,converted,train\nP02,,excluded,\n"
                     "P03,SR_003,converted,test\nP04,SR_004,converted,test\n")  # fmt: skip
    argv = predict.resolved_commands()[0]  # issue 21: --dose-map, the prescription and its RT Dose (defaults)
    model = "res/Dataset502_SynthRecur/nnUNetTrainerRecur_3epochs__nnUNetRecurPlans__3d_recur"  # AI random
    assert argv == ["recur", "predict", "out/synthetic/inhouse/patients/P03", "--model", model,
                    "--folds", "best", "--device", "cpu", "--out", "out/predict_new_patient",
                    "--dose-map"]  # fmt: skip
    assert set(JobGraph(list(jobs.values())).deps["predict_new_patient"]) == {
        "select_ai_random", "select_ai_finetune", "calibrate_ai_random"}  # fmt: skip
    # issue 21: the temperature of the best seed fitted on its validation patients (nnUNetv2_train --npz),
    # then the test patients scored as saved and calibrated
    assert "--npz" in jobs["train_ai_random_seed0"].resolved_commands()[0]
    assert jobs["calibrate_ai_random"].resolved_commands()[0][:3] == ["recur", "calibrate", model]
    scored = jobs["calibration_report"].resolved_commands()[0]
    assert scored[:2] == ["recur-eval", "calibration"] and "--calibration" not in scored  # none fitted yet
    Path(model).mkdir(parents=True)
    Path(model, "calibration.json").write_text("{}")
    assert f"{model}/calibration.json" in jobs["calibration_report"].resolved_commands()[0]
    assert (
        "AI random=out/predictions/ai_random" in scored and "res/Dataset502_SynthRecur/labelsTs" not in scored
    )


def test_demo_scores_the_relapse_pattern_against_the_planned_dose(tmp_path, monkeypatch):
    """Issue 20: `compare --dose` (the in-field column of Table 1) and `recur-eval dose-pattern` on the test
    patients' doses (doseTs) with every method of Table 1; issue 21: the new patient's RT Dose."""
    from rich.console import Console

    monkeypatch.chdir(tmp_path)
    cfg = d.DemoConfig(out=Path("out"), epochs=3, seeds=1)
    stages = d.build_jobs(cfg, _env(tmp_path), TRAINERS3)
    names = [s.name for s in stages]
    jobs = {s.name: s for s in stages}
    graph = JobGraph(stages)
    assert names.index("dose_pattern") == names.index("compare") + 1
    assert set(graph.deps["dose_pattern"]) == set(graph.deps["compare"]) == {
        "predict_ai_random", "predict_ai_finetune", "suvmax_predict", "gtv_predict",
        "select_best_cnn"}  # fmt: skip
    Path("out/report").mkdir(parents=True)
    Path("out/report/best.json").write_text(json.dumps({"percent": 40.0}))
    Path("out/report/best_cnn.json").write_text(json.dumps({"best": "AI finetune"}))  # select_best_cnn
    raw = "raw/Dataset502_SynthRecur"
    compare = jobs["compare"].resolved_commands()[0]
    assert compare[:2] == ["recur-eval", "compare"] and compare[-2:] == ["--dose", f"{raw}/doseTs"]
    assert jobs["dose_pattern"].resolved_commands() == [
        ["recur-eval", "dose-pattern", "--gt", f"{raw}/labelsTs", "--dose", f"{raw}/doseTs",
         "--targets", f"{raw}/masksTs", "--pred", "AI random=out/predictions/ai_random",
         "--pred", "AI finetune=out/predictions/ai_finetune", "--pred", "SUVmax 40%=out/predictions/suvmax",
         "--pred", "GTV=out/predictions/gtv", "--best", "AI finetune", "--out", "out/report/dose_pattern"]
    ]  # fmt: skip
    assert {p.name for p in jobs["dose_pattern"].resolved_outputs()} == {
        "dose_pattern.md", "dose_pattern.csv", "dose_pattern.json", "dose_pattern.png"}  # fmt: skip
    assert {p.name for p in jobs["compare"].resolved_outputs()} == {"table1.md", "stats.json", "per_case.csv"}
    # the new patient: `--dose-map` with the defaults; its RT Dose proves the job done
    assert "--dose-map" in jobs["predict_new_patient"].title
    assert {p.name for p in jobs["predict_new_patient"].resolved_outputs()} >= {
        "report.html", "RD_recur_prescription.dcm", "dose_prescription.nii.gz", "dose_map.json"}  # fmt: skip
    # what the demo prints after the job: the in-field POs each method captures
    summary = Path("out/report/dose_pattern/dose_pattern.json")
    summary.parent.mkdir()
    capture = {"AI random": {"in-field": {"count": 3, "n": 4}}, "GTV": {"in-field": {"count": 4, "n": 4}}}
    summary.write_text(json.dumps({"capture_by_po_class": capture}))
    console = Console(record=True, width=200)
    jobs["dose_pattern"].show(console)
    text = console.export_text()
    assert "AI random: 3 / 4 in-field PO(s) captured" in text and "GTV: 4 / 4" in text
    assert "dose_pattern.md" in text


def test_study_file_opts_in_to_the_new_patient_prediction(tmp_path):
    raw = tmp_path / "raw"
    (raw / "Dataset502_X").mkdir(parents=True)
    env = {"nnUNet_raw": str(raw), "nnUNet_preprocessed": str(tmp_path / "pre"),
           "nnUNet_results": str(tmp_path / "res")}  # fmt: skip
    toml = tmp_path / "s.toml"
    toml.write_text("[datasets]\nrelapse = 502\n[training]\nmethods = ['AI random']\nepochs = 3\n")
    jobs, _ = st.build_study(st.load_study(toml), env, AVAILABLE)
    assert "predict_new_patient" not in {j.name for j in jobs}  # off by default
    toml.write_text(toml.read_text() + "[prediction]\nnew_patient = 'dicom/P7'\n")
    jobs, _ = st.build_study(st.load_study(toml), env, AVAILABLE)
    argv = jobs[-1].resolved_commands()[0]
    assert jobs[-1].name == "predict_new_patient" and argv[2] == str(tmp_path / "dicom" / "P7")


def test_epochs_help_lists_the_variants_that_exist():
    assert d.epoch_choices(AVAILABLE) == [2, 3, 10]
    pytest.importorskip("nnunetv2")
    from nnunet_recur.trainers import variants

    real = d.epoch_choices(d.available_trainers())
    assert 50 in real and all(f"nnUNetTrainerRecur_{n}epochs" in variants.__all__ for n in real)


def test_pretrain_epochs_are_chosen_apart_from_the_training_epochs():
    t = d.resolve_trainers(10, AVAILABLE, pretrain_epochs=2)
    assert t.train == "nnUNetTrainerRecur_10epochs" and t.pretrain == "nnUNetTrainerRecurPretrain_2epochs"
    assert t.note == ""
    assert d.resolve_trainers(2, AVAILABLE, pretrain_epochs=0).pretrain == "nnUNetTrainerRecurPretrain"


def test_demo_defaults_are_those_of_experiment_1():
    pytest.importorskip("nnunetv2")
    cfg = d.DemoConfig(out=Path("x"))
    assert (cfg.size, cfg.inhouse_cases, cfg.hecktor_cases, cfg.epochs, cfg.pretrain_epochs) == (
        "demo", 48, 10, 50, 20)  # fmt: skip
    t = d.resolve_trainers(cfg.epochs, d.available_trainers(), cfg.pretrain_epochs)
    assert t == d.DemoTrainers("nnUNetTrainerRecurPretrain_20epochs", "nnUNetTrainerRecur_50epochs",
                               "nnUNetTrainerRecurFinetune_50epochs")  # fmt: skip
    from nnunet_recur.device_choice import resolve_device

    assert resolve_device("cpu") == "cpu" and resolve_device("auto") in ("cpu", "cuda", "mps")


def test_epochs_map_onto_trainer_variants():
    assert d.resolve_trainers(0, AVAILABLE) == d.DemoTrainers(
        "nnUNetTrainerRecurPretrain", "nnUNetTrainerRecur", "nnUNetTrainerRecurFinetune"
    )
    t10 = d.resolve_trainers(10, AVAILABLE)
    assert t10.train == "nnUNetTrainerRecur_10epochs"
    assert t10.pretrain == "nnUNetTrainerRecurPretrain_3epochs" and "3 epochs" in t10.note
    assert d.resolve_trainers(2, AVAILABLE).pretrain == "nnUNetTrainerRecurPretrain_2epochs"
    with pytest.raises(ValueError, match="available: 2, 3, 10"):
        d.resolve_trainers(7, AVAILABLE)


def test_real_trainer_variants_cover_the_demo_default():
    pytest.importorskip("nnunetv2")
    trainers = d.resolve_trainers(d.DEFAULT_EPOCHS, d.available_trainers())
    assert trainers.train.endswith(f"_{d.DEFAULT_EPOCHS}epochs")


def test_demo_refuses_to_mix_studies_in_one_folder(tmp_path):
    d.check_config(d.DemoConfig(out=tmp_path, epochs=3))
    d.check_config(d.DemoConfig(out=tmp_path, epochs=3, device="cuda"))  # device may change
    with pytest.raises(ValueError, match="epochs: 3 -> 4"):
        d.check_config(d.DemoConfig(out=tmp_path, epochs=4))


def test_foreign_dataset_with_demo_id_is_refused(tmp_path):
    env = _env(tmp_path)
    (Path(env["nnUNet_raw"]) / "Dataset502_MyRealData").mkdir(parents=True)
    Path(env["nnUNet_preprocessed"]).mkdir()
    with pytest.raises(ValueError, match="Dataset502_MyRealData"):
        d.check_dataset_ids(env)


def test_best_percent_formats_the_command_argument(tmp_path):
    f = tmp_path / "best.json"
    f.write_text(json.dumps({"percent": 38, "mean_dice": 0.2}))
    assert st.best_percent(f) == "38"
    f.write_text(json.dumps({"percent": 37.5, "mean_dice": 0.2}))
    assert st.best_percent(f) == "37.5"


def test_parse_folds():
    assert c.parse_folds("0,1,2,3,4") == [0, 1, 2, 3, 4]
    assert c.parse_folds("3") == [3]
    for bad in ("", "a,b", "1,1", "-1"):
        with pytest.raises(c.CVSetupError):
            c.parse_folds(bad)


def _cv_dataset(tmp_path: Path, val_cases: dict[int, list[str]]) -> dict[str, str]:
    env = _env(tmp_path)
    raw = Path(env["nnUNet_raw"]) / "Dataset777_Toy"
    (raw / "labelsTr").mkdir(parents=True)
    run = Path(env["nnUNet_results"]) / "Dataset777_Toy" / "nnUNetTrainerRecur__nnUNetRecurPlans__3d_recur"
    for fold, cases in val_cases.items():
        (run / f"fold_{fold}" / "validation").mkdir(parents=True)
        for case in cases:
            (raw / "labelsTr" / f"{case}.nii.gz").write_text("label")
            (run / f"fold_{fold}" / "validation" / f"{case}.nii.gz").write_text(f"pred{fold}")
    return env


def test_cv_gathers_each_folds_validation_cases_and_pools_them(tmp_path):
    env = _cv_dataset(tmp_path, {0: ["RECUR_001", "RECUR_002"], 1: ["RECUR_003"]})
    out = tmp_path / "cv"
    stages = {s.name: s for s in c.build_cv_jobs(777, "nnUNetTrainerRecur", [0, 1], "cpu", out, env)}
    assert list(stages)[:2] == ["train_fold0", "train_fold1"]
    train = stages["train_fold1"].resolved_commands()[0]
    assert train[:4] == ["nnUNetv2_train", "777", "3d_recur", "1"] and "--npz" in train
    stages["gather_fold0"].action()
    assert (out / "fold_0" / "cases.txt").read_text().split() == ["RECUR_001", "RECUR_002"]
    stages["gather_pooled"].action()
    pooled = out / "pooled" / "predictions"
    assert (pooled / "RECUR_003.nii.gz").read_text() == "pred1"
    assert (out / "pooled" / "cases.txt").read_text().split() == ["RECUR_001", "RECUR_002", "RECUR_003"]
    compare = stages["compare_pooled"].resolved_commands()[0]
    assert compare[:2] == ["recur-eval", "compare"] and f"nnUNetTrainerRecur={pooled}" in compare
    assert compare[compare.index("--cases") + 1] == str(out / "pooled" / "cases.txt")


def test_cv_pooling_refuses_overlapping_folds(tmp_path):
    env = _cv_dataset(tmp_path, {0: ["RECUR_001"], 1: ["RECUR_001"]})
    stages = {
        s.name: s for s in c.build_cv_jobs(777, "nnUNetTrainerRecur", [0, 1], "cpu", tmp_path / "o", env)
    }
    with pytest.raises(c.CVSetupError, match="split cv5"):
        stages["gather_pooled"].action()


def test_cv_unknown_dataset_is_a_clear_error(tmp_path):
    env = _env(tmp_path)
    Path(env["nnUNet_raw"]).mkdir()
    with pytest.raises(c.CVSetupError, match="Dataset123"):
        c.build_cv_jobs(123, "nnUNetTrainerRecur", [0], "cpu", tmp_path / "o", env)


def test_cv_pooled_links_carry_the_probability_maps_when_present(tmp_path):
    source = tmp_path / "fold_0" / "validation"
    source.mkdir(parents=True)
    (source / "RECUR_001.nii.gz").write_text("mask1")
    (source / "RECUR_001.npz").write_text("prob1")
    (source / "RECUR_002.nii.gz").write_text("mask2")  # trained without --npz: mask only
    target = tmp_path / "pooled"
    c.link_cases({source: ["RECUR_001", "RECUR_002"]}, target)
    assert sorted(p.name for p in target.iterdir()) == [
        "RECUR_001.nii.gz",
        "RECUR_001.npz",
        "RECUR_002.nii.gz",
    ]
    assert (target / "RECUR_001.npz").read_text() == "prob1"
    c.link_cases({source: ["RECUR_002"]}, target)  # rebuilt from scratch
    assert sorted(p.name for p in target.iterdir()) == ["RECUR_002.nii.gz"]


def test_cv_refuses_folds_that_splits_final_json_does_not_have(tmp_path):
    env = _cv_dataset(tmp_path, {0: ["RECUR_001"]})
    splits = Path(env["nnUNet_preprocessed"]) / "Dataset777_Toy" / "splits_final.json"
    splits.parent.mkdir(parents=True, exist_ok=True)
    splits.write_text(json.dumps([{"train": ["RECUR_002"], "val": ["RECUR_001"]}] * 5))
    with pytest.raises(c.CVSetupError, match=r"fold\(s\) \[9\] do not exist"):
        c.build_cv_jobs(777, "nnUNetTrainerRecur", [0, 9], "cpu", tmp_path / "o", env)
    jobs = c.build_cv_jobs(777, "nnUNetTrainerRecur", [0, 4], "cpu", tmp_path / "o", env)
    assert [j.name for j in jobs if j.name.startswith("train_")] == ["train_fold0", "train_fold4"]
    argv = {j.name: j for j in jobs}["train_fold4"].resolved_commands()[0]
    assert argv[:4] == ["nnUNetv2_train", "777", "3d_recur", "4"]


@pytest.mark.parametrize("size", ["demo", "small"])
def test_demo_crops_hecktor_to_the_gtvp_box_at_synthetic_sizes(tmp_path, size):
    """Regression: `recur demo --size small` converted HECKTOR with --crop none, and `recur plan` refused all
    10 whole images (45 x 72 x 72 voxels) as larger than the in-house patch (48 x 64 x 56)."""
    cfg = d.DemoConfig(out=tmp_path / "out", epochs=3, size=size)
    jobs = {j.name: j for j in d.build_jobs(cfg, _env(tmp_path), TRAINERS3)}
    argv = jobs["convert_hecktor"].resolved_commands()[0]
    assert argv[argv.index("--crop") + 1] == "auto"
