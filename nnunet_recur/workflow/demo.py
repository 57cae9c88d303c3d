"""The whole study on a synthetic cohort, as a list of public command lines (`recur demo`).

The demo is the tutorial: every stage is a command a user can type (`recur synth`, `recur convert`,
`recur plan`, stock `nnUNetv2_train` / `nnUNetv2_predict`, `recur-eval`), printed before it runs and
logged under ``OUT/logs/``.  The order follows the paper (Kutnar et al.): pre-train on HECKTOR GTVp,
train "AI random" and "AI finetune" on the in-house relapse dataset with K seeds each, keep the best
seed per method on validation Dice, predict the test patients, run the SUVmax-threshold and GTV
baselines, and compare everything in Table 1.

Seeds: nnU-Net has no seed flag.  The in-house converter's ``--split paper`` writes five *identical*
folds (same train/val cases), so fold k of that split is "seed k": an independent training run on the
same data.  The best seed is the fold whose ``fold_k/validation/summary.json`` (nnU-Net's own
validation on the validation patients, written at the end of every ``nnUNetv2_train``) has the highest
mean foreground Dice; its number is then given to ``nnUNetv2_predict -f``.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from nnunet_recur.workflow.stages import Stage

HECKTOR_ID = 501
HECKTOR_NAME = "SynthHECKTOR"
INHOUSE_ID = 502
INHOUSE_NAME = "SynthRecur"
PLANS = "nnUNetRecurPlans"
CONFIGURATION = "3d_recur"
TRAINER = "nnUNetTrainerRecur"
PRETRAIN_TRAINER = "nnUNetTrainerRecurPretrain"
PRETRAIN_FOLD = 0
PAPER_MAX_EPOCHS = 1000  # the recipe's own limit: `--epochs 1000` runs the unmodified trainers

# The defaults are sized for <= 15 minutes on a 2-core CPU (measured in docs/benchmarks_demo.md).
DEFAULT_INHOUSE_CASES = 24
DEFAULT_HECKTOR_CASES = 10
DEFAULT_EPOCHS = 10
DEFAULT_SEEDS = 1


@dataclass(frozen=True)
class DemoConfig:
    """What the user chose; stored in OUT/demo_config.json so that a rerun resumes the same study."""

    out: Path
    size: str = "small"
    epochs: int = DEFAULT_EPOCHS
    seeds: int = DEFAULT_SEEDS
    device: str = "cpu"
    inhouse_cases: int = DEFAULT_INHOUSE_CASES
    hecktor_cases: int = DEFAULT_HECKTOR_CASES
    seed: int = 2023

    def study_key(self) -> dict:
        """The choices that change results (device does not: resuming on a GPU is fine)."""
        d = asdict(self)
        d.pop("out")
        d.pop("device")
        return d


@dataclass(frozen=True)
class Method:
    """A CNN method of Table 1: a trainer, with or without the HECKTOR pre-trained weights."""

    key: str  # folder-safe name
    label: str  # the paper's name, used in Table 1
    trainer: str
    pretrained: bool


def display_path(path: Path) -> Path:
    """Relative to the working directory when inside it (shorter printed commands), else absolute."""
    path = Path(path).resolve()
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


class DemoPaths:
    """Every folder the demo writes, derived from OUT and the nnU-Net environment."""

    def __init__(self, cfg: DemoConfig, env: dict[str, str]):
        self.out = cfg.out
        self.synth_hecktor = cfg.out / "synthetic" / "hecktor"
        self.synth_inhouse = cfg.out / "synthetic" / "inhouse"
        self.raw = display_path(Path(env["nnUNet_raw"]))
        self.preprocessed = display_path(Path(env["nnUNet_preprocessed"]))
        self.results = display_path(Path(env["nnUNet_results"]))
        self.reports = cfg.out / "recur_reports"
        self.predictions = cfg.out / "predictions"
        self.selection = cfg.out / "selection"
        self.report = cfg.out / "report"

    def dataset(self, dataset_id: int, name: str) -> str:
        return f"Dataset{dataset_id:03d}_{name}"

    @property
    def hecktor_raw(self) -> Path:
        return self.raw / self.dataset(HECKTOR_ID, HECKTOR_NAME)

    @property
    def inhouse_raw(self) -> Path:
        return self.raw / self.dataset(INHOUSE_ID, INHOUSE_NAME)

    @property
    def inhouse_splits(self) -> Path:
        return self.preprocessed / self.dataset(INHOUSE_ID, INHOUSE_NAME) / "splits_final.json"

    def trained_fold(self, dataset: str, trainer: str, fold: int | str) -> Path:
        return self.results / dataset / f"{trainer}__{PLANS}__{CONFIGURATION}" / f"fold_{fold}"


# ------------------------------------------------------------------------------------------------
# Trainer names: nnU-Net has no epoch flag, so `--epochs N` picks a trainer variant


@dataclass(frozen=True)
class DemoTrainers:
    """The trainer classes one demo run uses (both CNN methods train the same class)."""

    pretrain: str
    train: str
    note: str = ""


def epoch_variants(base: str, available: Iterable[str]) -> dict[int, str]:
    """{N: name} for every `<base>_<N>epochs` class in `available`."""
    pattern = re.compile(re.escape(base) + r"_(\d+)epochs")
    found = {}
    for name in available:
        m = pattern.fullmatch(name)
        if m:
            found[int(m.group(1))] = name
    return found


def resolve_trainers(epochs: int, available: Iterable[str]) -> DemoTrainers:
    """Map `--epochs N` onto the trainer variants nnunet_recur.trainers offers.

    0 or 1000 = the full recipe (max 1000 epochs, early stopping).  Training needs an exact
    `nnUNetTrainerRecur_<N>epochs`; pre-training (only a warm start) uses the longest
    `nnUNetTrainerRecurPretrain_<M>epochs` with M <= N, or the shortest if none is that short.
    """
    available = list(available)
    if epochs <= 0 or epochs == PAPER_MAX_EPOCHS:
        return DemoTrainers(PRETRAIN_TRAINER, TRAINER)
    train = epoch_variants(TRAINER, available)
    if epochs not in train:
        options = ", ".join(str(n) for n in sorted(train)) or "none"
        raise ValueError(
            f"--epochs {epochs}: nnunet_recur.trainers has no {TRAINER}_{epochs}epochs; "
            f"available: {options} (or 0 for the paper's full recipe)"
        )
    pre = epoch_variants(PRETRAIN_TRAINER, available)
    if epochs in pre:
        return DemoTrainers(pre[epochs], train[epochs])
    if not pre:
        raise ValueError(f"nnunet_recur.trainers has no {PRETRAIN_TRAINER}_<N>epochs variant")
    shorter = [n for n in pre if n <= epochs]
    m = max(shorter) if shorter else min(pre)
    return DemoTrainers(pre[m], train[epochs], note=f"pre-training runs {m} epochs ({pre[m]})")


def available_trainers() -> list[str]:
    """Trainer class names that nnunet_recur.trainers exports to nnUNet_extTrainer.

    Read from the literal ``__all__`` of ``trainers/variants.py`` without importing it: the import
    pulls in torch and nnunetv2 (~1 GB resident) into a process that only launches subprocesses.
    """
    import ast  # noqa: PLC0415

    import nnunet_recur  # noqa: PLC0415

    source = Path(nnunet_recur.__file__).parent / "trainers" / "variants.py"
    try:
        tree = ast.parse(source.read_text())
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                getattr(t, "id", None) == "__all__" for t in node.targets
            ):
                return [str(n) for n in ast.literal_eval(node.value)]
    except (OSError, SyntaxError, ValueError):
        pass
    from nnunet_recur.trainers import variants  # noqa: PLC0415 - fallback: the real module

    return list(variants.__all__)


def methods(trainers: DemoTrainers) -> list[Method]:
    return [
        Method("ai_random", "AI random", trainers.train, pretrained=False),
        Method("ai_finetune", "AI finetune", trainers.train, pretrained=True),
    ]


def nnunet_environment(out: Path, device: str) -> dict[str, str]:
    """nnU-Net's folders inside OUT unless the user already exported them, plus the trainer path."""
    env: dict[str, str] = {}
    for var, sub in (
        ("nnUNet_raw", "nnUNet_raw"),
        ("nnUNet_preprocessed", "nnUNet_preprocessed"),
        ("nnUNet_results", "nnUNet_results"),
    ):
        env[var] = os.environ.get(var) or str((out / sub).resolve())
    env["nnUNet_extTrainer"] = _ext_trainer_path()  # ours first, keeping the user's folders
    if device == "cpu":
        # measured: nnU-Net's default 8 export workers only cost start-up time on 2 cores
        env.setdefault("nnUNet_def_n_proc", os.environ.get("nnUNet_def_n_proc", "1"))
    return env


def _ext_trainer_path() -> str:
    """What `recur env` exports as nnUNet_extTrainer (ours first, keeping the user's folders).

    trainers/environment.py is loaded on its own: importing the package ``nnunet_recur.trainers`` pulls
    in torch (~650 MB resident) into this process, which only launches subprocesses.
    """
    import importlib.util  # noqa: PLC0415

    import nnunet_recur  # noqa: PLC0415

    source = Path(nnunet_recur.__file__).parent / "trainers" / "environment.py"
    spec = importlib.util.spec_from_file_location("_recur_trainers_environment", source)
    if spec is None or spec.loader is None:  # pragma: no cover - a broken install
        from nnunet_recur.trainers.environment import ext_trainer_value  # noqa: PLC0415
    else:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        ext_trainer_value = module.ext_trainer_value
    return ext_trainer_value(os.environ)


# ------------------------------------------------------------------------------------------------
# Stages


def build_stages(cfg: DemoConfig, env: dict[str, str], trainers: DemoTrainers) -> list[Stage]:
    """The study as stages, in the order of issue 6: synth, convert, plan, train, predict, evaluate."""
    p = DemoPaths(cfg, env)
    hecktor_ds = p.dataset(HECKTOR_ID, HECKTOR_NAME)
    inhouse_ds = p.dataset(INHOUSE_ID, INHOUSE_NAME)
    cpu = cfg.device == "cpu"
    train_env = {"nnUNet_n_proc_DA": "0"} if cpu else {}  # no augmentation workers on 2 cores
    stages: list[Stage] = []

    # 1. synthetic cohorts ----------------------------------------------------------------------
    stages.append(
        Stage(
            "01_synth_hecktor",
            f"Synthesise a HECKTOR-like pre-training cohort ({cfg.hecktor_cases} cases)",
            [
                ["recur", "synth", p.synth_hecktor, "--cases", cfg.hecktor_cases, "--seed", cfg.seed,
                 "--format", "hecktor", "--size", cfg.size],
            ],
            outputs=[p.synth_hecktor / "imagesTr", p.synth_hecktor / "labelsTr"],
        )
    )  # fmt: skip
    stages.append(
        Stage(
            "02_synth_inhouse",
            f"Synthesise an in-house DICOM cohort ({cfg.inhouse_cases} patients, some with defects)",
            [
                ["recur", "synth", p.synth_inhouse, "--cases", cfg.inhouse_cases, "--seed", cfg.seed + 1,
                 "--format", "inhouse-dicom", "--size", cfg.size, "--defects"],
            ],
            outputs=[p.synth_inhouse / "patients", p.synth_inhouse / "ground_truth" / "defects.json"],
        )
    )  # fmt: skip

    # 2. conversion ------------------------------------------------------------------------------
    # small images: the whole (72 x 72 x 45) image, as the paper's fixed box holds more than the tumour
    hecktor_crop = ["--crop", "none"] if cfg.size == "small" else []
    stages.append(
        Stage(
            "03_convert_hecktor",
            "Convert the HECKTOR cohort into an nnU-Net dataset (GTVp labels)",
            [
                ["recur", "convert", "hecktor", p.synth_hecktor, "--dataset-id", HECKTOR_ID,
                 "--name", HECKTOR_NAME, *hecktor_crop, "--report-dir", p.reports / hecktor_ds],
            ],
            outputs=[p.hecktor_raw / "dataset.json"],
        )
    )  # fmt: skip
    stages.append(
        Stage(
            "04_convert_inhouse",
            "Convert the in-house DICOM cohort (quality checks, SUV, RTSTRUCT masks, paper split)",
            [
                ["recur", "convert", "inhouse", p.synth_inhouse / "patients", "--dataset-id", INHOUSE_ID,
                 "--name", INHOUSE_NAME, "--split", "paper", "--seed", cfg.seed,
                 "--report-dir", p.reports / inhouse_ds],
            ],
            outputs=[p.inhouse_raw / "dataset.json", p.inhouse_splits],
            show=lambda console: show_exclusions(console, p.reports / inhouse_ds / "exclusions.csv"),
        )
    )  # fmt: skip

    # 3. plans shared by pre-training and fine-tuning --------------------------------------------
    plans_file = p.preprocessed / inhouse_ds / f"{PLANS}.json"
    hecktor_plans_file = p.preprocessed / hecktor_ds / f"{PLANS}.json"
    stages.append(
        Stage(
            "05_plan",
            "Plan and preprocess both datasets with one architecture (nnUNetRecurPlans, 3d_recur)",
            [["recur", "plan", INHOUSE_ID, "--pretrain-from", HECKTOR_ID]],
            outputs=[plans_file, hecktor_plans_file],
        )
    )

    # 4. training --------------------------------------------------------------------------------
    device = ["-device", cfg.device]
    pre_trainer = trainers.pretrain
    pre_fold = p.trained_fold(hecktor_ds, pre_trainer, PRETRAIN_FOLD)
    stages.append(
        Stage(
            "06_pretrain",
            f"Pre-train on HECKTOR GTVp ({pre_trainer})",
            lambda: [
                ["nnUNetv2_train", HECKTOR_ID, CONFIGURATION, PRETRAIN_FOLD, "-p", PLANS, "-tr", pre_trainer,
                 *device, *_resume_flag(pre_fold)],
            ],
            outputs=[pre_fold / "checkpoint_final.pth"],
            env=train_env,
        )
    )  # fmt: skip
    step = 7
    for method in methods(trainers):
        folds = []
        for seed in range(cfg.seeds):
            fold_dir = method_fold_dir(p, method, inhouse_ds, seed)
            folds.append(fold_dir)
            stages.append(
                Stage(
                    f"{step:02d}_train_{method.key}_seed{seed}",
                    f"Train {method.label}, seed {seed} (fold {seed} of the paper split)",
                    _train_command(p, cfg, method, seed, fold_dir, pre_fold),
                    outputs=[fold_dir / "checkpoint_final.pth", fold_dir / "validation" / "summary.json"],
                    env={**train_env, **_method_env(p, method)},
                )
            )
            step += 1
        stages.append(
            Stage(
                f"{step:02d}_select_{method.key}",
                f"Keep the best {method.label} seed on validation Dice",
                action=_select_action(p, method, folds),
                outputs=[p.selection / f"{method.key}.json"],
                show=_show_selection(p, method),
            )
        )
        step += 1

    # 5. prediction of the test patients --------------------------------------------------------
    tta = ["--disable_tta", "-npp", "1", "-nps", "1"] if cpu else []
    for method in methods(trainers):
        pred_dir = p.predictions / method.key
        stages.append(
            Stage(
                f"{step:02d}_predict_{method.key}",
                f"Predict the test patients with {method.label}",
                _predict_command(p, method, pred_dir, device, tta),
                outputs=lambda d=pred_dir: _expected_predictions(p, d),
                env=_method_env(p, method),
            )
        )
        step += 1

    # 6. baselines ---------------------------------------------------------------------------------
    stages.append(
        Stage(
            f"{step:02d}_suvmax_sweep",
            "Find the best SUVmax threshold on the validation patients (Figure 4)",
            [
                ["recur-eval", "suvmax-sweep", "--images", p.inhouse_raw / "imagesTr",
                 "--masks", p.inhouse_raw / "masksTr", "--gt", p.inhouse_raw / "labelsTr",
                 "--splits", p.inhouse_splits, "--fold", "0", "--out", p.report],
            ],
            outputs=[p.report / "best.json", p.report / "figure4.png"],
        )
    )  # fmt: skip
    step += 1
    suv_dir = p.predictions / "suvmax"
    stages.append(
        Stage(
            f"{step:02d}_suvmax_predict",
            "SUVmax-threshold baseline on the test patients",
            lambda: [
                ["recur-eval", "suvmax-predict", "--percent", best_percent(p.report / "best.json"),
                 "--images", p.inhouse_raw / "imagesTs", "--masks", p.inhouse_raw / "masksTs",
                 "--out", suv_dir],
            ],
            outputs=lambda: _expected_predictions(p, suv_dir),
        )
    )  # fmt: skip
    step += 1
    gtv_dir = p.predictions / "gtv"
    stages.append(
        Stage(
            f"{step:02d}_gtv_predict",
            "GTV-contour baseline on the test patients",
            [["recur-eval", "gtv-predict", "--masks", p.inhouse_raw / "masksTs", "--out", gtv_dir]],
            outputs=lambda: _expected_predictions(p, gtv_dir),
        )
    )
    step += 1

    # 7. comparison ------------------------------------------------------------------------------
    def compare_command() -> list[list[str]]:
        preds = []
        for method in methods(trainers):
            preds += ["--pred", f"{method.label}={p.predictions / method.key}"]
        preds += ["--pred", f"SUVmax {best_percent(p.report / 'best.json')}%={suv_dir}"]
        preds += ["--pred", f"GTV={gtv_dir}"]
        return [
            ["recur-eval", "compare", "--gt", str(p.inhouse_raw / "labelsTs"), *preds,
             "--images", str(p.inhouse_raw / "imagesTs"), "--masks", str(p.inhouse_raw / "masksTs"),
             "--best", "AI random", "--out", str(p.report)],
        ]  # fmt: skip

    stages.append(
        Stage(
            f"{step:02d}_compare",
            "Compare all methods on the test patients: Table 1, statistics, figures",
            compare_command,
            outputs=[p.report / n for n in ("table1.md", "stats.json", "per_case.csv")],
        )
    )
    return stages


def method_fold_dir(p: DemoPaths, method: Method, dataset: str, seed: int) -> Path:
    return (
        _method_results(p, method) / dataset / f"{method.trainer}__{PLANS}__{CONFIGURATION}" / f"fold_{seed}"
    )


def _method_results(p: DemoPaths, method: Method) -> Path:
    """AI random and AI finetune use the same trainer class; nnU-Net names its output folder after the
    trainer only, so the fine-tuned runs get their own nnUNet_results folder to avoid overwriting."""
    return p.results / "ai_finetune" if method.pretrained else p.results


def _method_env(p: DemoPaths, method: Method) -> dict[str, str]:
    return {"nnUNet_results": str(_method_results(p, method))} if method.pretrained else {}


def _resume_flag(fold_dir: Path) -> list[str]:
    """`--c` continues an interrupted training from its latest checkpoint (Ctrl-C and rerun)."""
    if any((fold_dir / f).is_file() for f in ("checkpoint_latest.pth", "checkpoint_final.pth")):
        return ["--c"]
    return []


def _train_command(p: DemoPaths, cfg: DemoConfig, method: Method, seed: int, fold_dir: Path, pre_fold: Path):
    def build() -> list[list[str]]:
        resume = _resume_flag(fold_dir)
        weights = []
        if method.pretrained and not resume:  # nnU-Net refuses --c together with -pretrained_weights
            weights = ["-pretrained_weights", str(pre_fold / "checkpoint_final.pth")]
        return [
            ["nnUNetv2_train", str(INHOUSE_ID), CONFIGURATION, str(seed), "-p", PLANS, "-tr", method.trainer,
             *weights, "-device", cfg.device, *resume],
        ]  # fmt: skip

    return build


def _predict_command(p: DemoPaths, method: Method, pred_dir: Path, device: list[str], tta: list[str]):
    def build() -> list[list[str]]:
        fold = selected_fold(p, method)
        return [
            ["nnUNetv2_predict", "-i", str(p.inhouse_raw / "imagesTs"), "-o", str(pred_dir),
             "-d", str(INHOUSE_ID), "-c", CONFIGURATION, "-p", PLANS, "-tr", method.trainer, "-f", str(fold),
             "--save_probabilities", *device, *tta],
        ]  # fmt: skip

    return build


def test_cases(p: DemoPaths) -> list[str]:
    """Case ids of the held-out test patients (labelsTs)."""
    return sorted(f.name[: -len(".nii.gz")] for f in (p.inhouse_raw / "labelsTs").glob("*.nii.gz"))


def _expected_predictions(p: DemoPaths, pred_dir: Path) -> list[Path]:
    cases = test_cases(p)
    return [pred_dir / f"{c}.nii.gz" for c in cases] or [pred_dir / "<no test cases in labelsTs>"]


# ------------------------------------------------------------------------------------------------
# Seed selection and values read between stages


def validation_dice(fold_dir: Path) -> float:
    """Mean foreground Dice of nnU-Net's end-of-training validation (fold_k/validation/summary.json)."""
    summary = fold_dir / "validation" / "summary.json"
    if not summary.is_file():
        raise FileNotFoundError(f"{summary}: no validation summary (did nnUNetv2_train finish?)")
    data = json.loads(summary.read_text())
    try:
        return float(data["foreground_mean"]["Dice"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{summary}: no foreground_mean.Dice entry") from exc


def select_best_seed(fold_dirs: Sequence[Path]) -> dict:
    """The seed (fold) with the highest validation Dice; ties go to the lower seed. NaN never wins."""
    scores = {}
    for seed, fold_dir in enumerate(fold_dirs):
        d = validation_dice(fold_dir)
        scores[seed] = d
    ranked = sorted(scores, key=lambda s: (-(scores[s] if scores[s] == scores[s] else -1.0), s))
    best = ranked[0]
    return {"fold": best, "validation_dice": scores[best], "all": {str(k): v for k, v in scores.items()}}


def _select_action(p: DemoPaths, method: Method, fold_dirs: list[Path]):
    def act() -> None:
        choice = select_best_seed(fold_dirs)
        choice.update({"method": method.label, "trainer": method.trainer})
        p.selection.mkdir(parents=True, exist_ok=True)
        target = p.selection / f"{method.key}.json"
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(choice, indent=1))
        os.replace(tmp, target)

    return act


def _show_selection(p: DemoPaths, method: Method):
    def show(console: Console) -> None:
        path = p.selection / f"{method.key}.json"
        if path.is_file():
            c = json.loads(path.read_text())
            scores = ", ".join(f"seed {k}: {v:.3f}" for k, v in c["all"].items())
            console.print(f"    {method.label}: {scores} -> seed {c['fold']} (use -f {c['fold']})")

    return show


def selected_fold(p: DemoPaths, method: Method) -> int:
    return int(json.loads((p.selection / f"{method.key}.json").read_text())["fold"])


def best_percent(best_json: Path) -> str:
    """The SUVmax percentage chosen on validation, formatted as the command line takes it."""
    value = float(json.loads(best_json.read_text())["percent"])
    return str(int(value)) if value.is_integer() else f"{value:g}"


def show_exclusions(console: Console, csv_path: Path) -> None:
    """The converter's exclusions (patient folder, cause, detail) as a table."""
    if not csv_path.is_file():
        console.print(f"    (no exclusion report at {csv_path})")
        return
    with csv_path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        console.print("    no patient excluded")
        return
    table = Table(title=f"{len(rows)} patient(s) excluded by the quality checks", title_justify="left")
    table.add_column("patient", no_wrap=True)
    table.add_column("cause", no_wrap=True)
    table.add_column("detail", no_wrap=True, overflow="ellipsis", max_width=60)
    for row in rows:
        detail = (row.get("detail") or "").split(": ", 1)[-1]  # drop the file path; the CSV keeps it
        table.add_row(row.get("patient", ""), row.get("cause", ""), detail)
    console.print(table)
    console.print(f"    full list: {csv_path}", soft_wrap=True)


# ------------------------------------------------------------------------------------------------
# Configuration guard


def check_config(cfg: DemoConfig) -> None:
    """Refuse to mix two different studies in one OUT folder (a rerun must resume the same one)."""
    path = cfg.out / "demo_config.json"
    key = cfg.study_key()
    if path.is_file():
        old = json.loads(path.read_text())
        if old != key:
            diff = ", ".join(f"{k}: {old.get(k)} -> {v}" for k, v in key.items() if old.get(k) != v)
            raise ValueError(
                f"{cfg.out} holds a demo run with other settings ({diff}); "
                f"use another --out or delete {cfg.out} to start over"
            )
        return
    cfg.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(key, indent=1))


def check_dataset_ids(env: dict[str, str]) -> None:
    """A foreign DatasetXXX folder with our id would make nnU-Net's id look-up ambiguous."""
    for root in (env["nnUNet_raw"], env["nnUNet_preprocessed"]):
        for did, name in ((HECKTOR_ID, HECKTOR_NAME), (INHOUSE_ID, INHOUSE_NAME)):
            for f in Path(root).glob(f"Dataset{did:03d}_*"):
                if f.name != f"Dataset{did:03d}_{name}":
                    raise ValueError(
                        f"{f} already uses dataset id {did}; the demo needs it for Dataset{did:03d}_{name}. "
                        "Unset nnUNet_raw/nnUNet_preprocessed/nnUNet_results to keep the demo inside --out."
                    )


def print_table1(console: Console, report: Path) -> None:
    from rich.markdown import Markdown  # noqa: PLC0415

    table = report / "table1.md"
    if table.is_file():
        console.rule("Table 1 (test patients)")
        console.print(Markdown(table.read_text()))
        console.print(f"Report folder: {report}")
