"""Local-only vs federated vs pooled training on a small 3-site cohort (issue 22 §4), on CPU, in process.

A toy by necessity (2 shared CPU cores, no GPU): the tiny CT/PET blob cases of the nnU-Net tests
(tests/test_trainers_nnunet.py), 3 sites with 6/4/2 training cases and 2 test cases each, one central plan
(`recur plan` on all training cases), the network narrowed to 8-64 features. Every model starts from the
same seeded weights and trains with nnUNetTrainerRecur through `federated.local_training.run_round`, the
function the Flower ClientApp runs, with the same budget in epochs of compute (R x E):

- local-only: each site trains alone for R x E epochs (one continuous run);
- pooled: one model on all sites' training cases for R x E epochs (the upper bound);
- federated: R rounds x E local epochs at each site, FedAvg weighted by cases (`federated.fedavg`), FedProx
  with --fedprox-mu; `--also E2:MU2` adds further federated runs with the same budget (R x E / E2 rounds).

One pooled-test-set evaluator (a trainer set up once on the 6 test cases) scores every model every
--eval-every epochs of compute, per test case (whole-volume Dice, the trainer's validation predictor), so
the curves, per-site means and medians come from one code path; the final models (no best-epoch
selection) are the last points. The training itself is untouched (the local and pooled runs keep their
per-epoch validation, which drives the trainer's plateau schedule). Flower's transport is not in this loop
(the deployment test measures it); bytes per round here = 2 x weights x sites.

Writes docs/benchmarks_federated.md (a "## Reading" section already there is kept), and beside it .json
(curves, results, timings; rewritten after every arm) and .png (test Dice vs epochs of compute).

Example: .venv/bin/python bench/federated_compare.py --rounds 60 --local-epochs 1 --out /tmp/fedbench
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

SITES = {"SITE_A": 6, "SITE_B": 4, "SITE_C": 2}
TEST_PER_SITE = 2
DATASET_ID, DATASET = 994, "Dataset994_FedBench"
FEATURES = [8, 16, 32, 64]
TRAINER = "nnUNetTrainerRecur"


def build(root: Path) -> dict:
    from federated_cohort import base_env
    from test_trainers_nnunet import write_dataset

    env = base_env(root)
    n = sum(SITES.values()) + TEST_PER_SITE * len(SITES)
    cases = write_dataset(root / "raw", DATASET, "relapse", "BEN", n, 0, (16, 24, 24), seed=7)
    order = iter(cases)
    split = {s: {"train": [next(order) for _ in range(k)]} for s, k in SITES.items()}
    for s in SITES:
        split[s]["test"] = [next(order) for _ in range(TEST_PER_SITE)]
    pre = root / "preprocessed" / DATASET
    pre.mkdir(parents=True, exist_ok=True)
    (pre / "splits_final.json").write_text(json.dumps([{"train": cases, "val": cases[:1]}] * 5))
    exports = subprocess.run(
        [sys.executable, "-m", "nnunet_recur.cli", "env"], env=env, capture_output=True, text=True
    )
    for line in exports.stdout.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export ") :].partition("=")
            env[key] = value.strip("'\"")
    done = subprocess.run(
        [sys.executable, "-m", "nnunet_recur.cli", "plan", str(DATASET_ID)],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(done.stdout + done.stderr)
    plans = json.loads((pre / "nnUNetRecurPlans.json").read_text())
    plans["configurations"]["3d_recur"]["architecture"]["arch_kwargs"]["features_per_stage"] = FEATURES
    data = pre / "nnUNetRecurPlans_3d_recur"

    def folder(name: str, train: list[str], test: list[str]) -> Path:
        out = root / "sites" / name
        (out / data.name).mkdir(parents=True, exist_ok=True)
        (out / "nnUNetRecurPlans.json").write_text(json.dumps(plans))
        for name in ("dataset.json", "dataset_fingerprint.json"):
            shutil.copy(pre / name, out / name)
        for case in train + test:
            for path in data.glob(f"{case}*"):
                shutil.copy(path, out / data.name / path.name)
        (out / "splits_final.json").write_text(json.dumps([{"train": train, "val": test}] * 5))
        return out

    folders = {s: folder(s, split[s]["train"], split[s]["test"]) for s in SITES}
    all_train = [c for s in SITES for c in split[s]["train"]]
    all_test = [c for s in SITES for c in split[s]["test"]]
    folders["POOLED"] = folder("POOLED", all_train, all_test)
    return {
        "plans": plans,
        "folders": folders,
        "dataset_json": json.loads((pre / "dataset.json").read_text()),
        "test_site": {c: s for s in SITES for c in split[s]["test"]},
    }


class PooledTestEvaluator:
    """One trainer set up once on the pooled test cases: scores any weights per test case, fast.

    The Dice per case is the trainer's own (validate_whole_volumes: hard Dice per region, mean over regions),
    computed here per case because that method returns only the mean."""

    def __init__(self, folder: Path, work: Path, plans: dict, test_site: dict[str, str]):
        from nnunet_recur.federated import local_training

        self._local_training = local_training
        self.trainer = local_training._trainer(folder, work, plans, TRAINER, 0, 0.0, "cpu")
        self.trainer.initialize()
        self.trainer.on_train_start()
        self.test_site = test_site
        self.seconds = 0.0

    def __call__(self, weights: dict) -> dict[str, float]:
        import numpy as np
        import torch

        from nnunet_recur.trainers.losses import hard_dice

        started = time.time()
        self._local_training._load(self.trainer, weights)
        self.trainer.network.eval()
        dice = {}
        with torch.no_grad():
            for key, logits, target in self.trainer.validation_cases():
                dice[key] = float(np.mean([hard_dice(logits[i] > 0, target[i]) for i in range(len(target))]))
        self.seconds += time.time() - started
        return dice


def summarise(per_case: dict[str, float], test_site: dict[str, str]) -> dict:
    """Per-site mean (= median of 2), and the pooled test set's mean and median."""
    import numpy as np

    out = {s: float(np.mean([d for c, d in per_case.items() if test_site[c] == s])) for s in SITES}
    out["pooled_mean"] = float(np.mean(list(per_case.values())))
    out["pooled_median"] = float(np.median(list(per_case.values())))
    return out


def numpy_weights(network) -> dict:
    return {k: v.detach().cpu().numpy().copy() for k, v in network.state_dict().items()}


def parse_also(text: str) -> tuple[int, float]:
    epochs, _, mu = text.partition(":")
    return int(epochs), float(mu or 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="federated rounds R")
    parser.add_argument("--local-epochs", type=int, default=1, help="local epochs per round E")
    parser.add_argument("--fedprox-mu", type=float, default=0.0, help="FedProx proximal weight (0: FedAvg)")
    parser.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="E:MU",
        help="a further federated run with E local epochs per round and FedProx MU, same budget R x E",
    )
    parser.add_argument("--eval-every", type=int, default=1, help="score every K epochs of compute")
    parser.add_argument("--arms", default="local,pooled,federated", help="which arms to run (comma list)")
    parser.add_argument("--out", type=Path, help="scratch folder (deleted first)")
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks_federated.md")
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        metavar="JSON",
        help="no training: write --doc from the result JSONs of runs with other --arms (same budget)",
    )
    args = parser.parse_args()
    if args.merge:
        write_outputs(args.doc, merge([json.loads(p.read_text(encoding="utf-8")) for p in args.merge]))
        return
    if args.out is None:
        parser.error("--out is required (or --merge)")
    budget = args.rounds * args.local_epochs
    variants = [(args.local_epochs, args.fedprox_mu)] + [parse_also(a) for a in args.also]
    for epochs, _ in variants:
        if epochs < 1 or budget % epochs:
            parser.error(f"local epochs {epochs} must divide the budget R x E = {budget}")
    arms = set(args.arms.split(","))
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    from rich.progress import Progress

    from nnunet_recur.federated import fedavg
    from nnunet_recur.federated import model_folder as models
    from nnunet_recur.federated.local_training import round_seed, run_round

    root = args.out
    shutil.rmtree(root, ignore_errors=True)
    started = time.time()
    info = build(root)
    plans, folders, test_site = info["plans"], info["folders"], info["test_site"]
    init = models.initial_weights(plans, models.model_dataset_json(info["dataset_json"]), TRAINER, 0)
    evaluate = PooledTestEvaluator(folders["POOLED"], root / "work" / "evaluator", plans, test_site)
    first = evaluate(init)
    record = {
        "settings": {
            "rounds": args.rounds,
            "local_epochs": args.local_epochs,
            "fedprox_mu": args.fedprox_mu,
            "budget_epochs": budget,
            "eval_every": args.eval_every,
            "sites": SITES,
            "test_per_site": TEST_PER_SITE,
            "features": FEATURES,
            "trainer": TRAINER,
            "commands": ["bench/federated_compare.py " + " ".join(sys.argv[1:])],
        },
        "per_case_site": test_site,
        "curves": {},  # arm -> [{"epochs": n, "per_case": {...}, **summary}]
        "timings": {"setup_s": time.time() - started},
        "federated_rounds": {},
        "bytes_per_round": 2 * len(SITES) * sum(v.nbytes for v in init.values()),
    }

    def point(arm: str, epochs: int, per_case: dict) -> None:
        entry = {"epochs": epochs, "per_case": per_case, **summarise(per_case, test_site)}
        record["curves"].setdefault(arm, []).append(entry)
        save()  # partial curves survive an interrupted run

    def save() -> None:
        write_outputs(args.doc, record)

    def continuous(arm: str, folder: Path, progress, task) -> None:
        """One run of `budget` epochs (local-only or pooled), scored every K epochs via the callback."""
        point(arm, 0, first)

        def after_epoch(epoch: int, network) -> None:
            progress.advance(task)
            if (epoch + 1) % args.eval_every == 0 or epoch + 1 == budget:
                point(arm, epoch + 1, evaluate(numpy_weights(network)))

        t = time.time()
        run_round(folder, root / "work" / arm, plans, init, TRAINER, budget, after_epoch=after_epoch)
        record["timings"][f"{arm}_s"] = time.time() - t
        save()

    with Progress() as progress:
        if "local" in arms:
            for site in SITES:
                task = progress.add_task(f"local-only {site}", total=budget)
                continuous(f"local-only {site}", folders[site], progress, task)
        if "pooled" in arms:
            task = progress.add_task("pooled", total=budget)
            continuous("pooled", folders["POOLED"], progress, task)
        if "federated" in arms:
            for epochs, mu in variants:
                arm = f"federated E={epochs}" + (f" mu={mu:g}" if mu else "")
                rounds = budget // epochs
                every = max(1, math.ceil(args.eval_every / epochs))
                task = progress.add_task(arm, total=rounds)
                point(arm, 0, first)
                weights, log, t = init, [], time.time()
                for r in range(1, rounds + 1):
                    r0 = time.time()
                    updates, site_dice = [], {}
                    for site in SITES:
                        out = run_round(  # the round's seed, as the ClientApp trains (apps._site_round)
                            folders[site], root / "work" / f"fed_{site}", plans, weights, TRAINER, epochs, mu,
                            seed=round_seed(0, r),
                        )  # fmt: skip
                        updates.append(fedavg.SiteUpdate(site, out.weights, out.n_train))
                        site_dice[site] = out.val_dice  # global model r - 1 on the site's test cases
                    weights = fedavg.federated_average(updates, weights)
                    log.append({"round": r, "seconds": time.time() - r0, "val_dice_model_before": site_dice})
                    if r % every == 0 or r == rounds:
                        point(arm, r * epochs, evaluate(weights))
                    progress.advance(task)
                record["timings"][f"{arm}_s"] = time.time() - t
                record["federated_rounds"][arm] = log
                save()
    record["timings"]["evaluation_s"] = evaluate.seconds
    record["timings"]["total_s"] = time.time() - started
    save()
    print(args.doc.read_text(encoding="utf-8")[:4000])


def merge(records: list[dict]) -> dict:
    """One record from runs of the same cohort and budget that ran different arms (e.g. in parallel)."""
    budgets = {r["settings"]["budget_epochs"] for r in records}
    if len(budgets) != 1:
        raise SystemExit(
            f"error: the runs have different budgets {sorted(budgets)}; merge runs of one budget"
        )
    merged = json.loads(json.dumps(records[0]))
    merged["settings"]["commands"] = [
        c
        for r in records
        for c in r["settings"].get("commands")
        or [
            f"bench/federated_compare.py --rounds {r['settings']['rounds']} --local-epochs "
            f"{r['settings']['local_epochs']} --eval-every {r['settings']['eval_every']} (arms: "
            + ", ".join(r["curves"])
            + ")"
        ]
    ]
    merged["settings"]["parallel_runs"] = len(records)
    merged["timings"] = {"setup_s": max(r["timings"].get("setup_s", 0.0) for r in records)}
    for r in records[1:]:
        merged["curves"].update(r["curves"])
        merged["federated_rounds"].update(r["federated_rounds"])
    for r in records:
        for key, value in r["timings"].items():
            if key not in ("setup_s", "total_s"):
                merged["timings"][key] = merged["timings"].get(key, 0.0) + value
    return merged


def final_table(record: dict) -> list[str]:
    lines = [
        "| model | " + " | ".join(SITES) + " | pooled test set: mean | median |",
        "|---|" + "---|" * (len(SITES) + 2),
    ]
    for arm, curve in record["curves"].items():
        last = curve[-1]
        values = [last[s] for s in SITES] + [last["pooled_mean"], last["pooled_median"]]
        lines.append(f"| {arm} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    return lines


def best_table(record: dict) -> list[str]:
    """Each arm's best point on the curve (median over the pooled test set), with the epochs it took."""
    lines = [
        "| model | best median (pooled test set) | at epoch | own-site Dice there | last median |",
        "|---|---|---|---|---|",
    ]
    for arm, curve in record["curves"].items():
        best = max(curve, key=lambda p: p["pooled_median"])
        own = next((s for s in SITES if arm.endswith(s)), None)
        own_text = f"{best[own]:.3f} ({own})" if own else "-"
        lines.append(
            f"| {arm} | {best['pooled_median']:.3f} | {best['epochs']} | {own_text} | "
            f"{curve[-1]['pooled_median']:.3f} |"
        )
    return lines


def curve_table(record: dict, key: str) -> list[str]:
    arms = list(record["curves"])
    epochs = sorted({p["epochs"] for c in record["curves"].values() for p in c})
    lines = ["| epochs | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms)]
    for n in epochs:
        cells = []
        for arm in arms:
            hit = next((p for p in record["curves"][arm] if p["epochs"] == n), None)
            cells.append(f"{hit[key]:.3f}" if hit else "")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return lines


def plot(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nnunet_recur.atomic_io import atomic_path

    panels = [*SITES, "pooled_median"]
    titles = [f"{s} test cases (mean of {TEST_PER_SITE})" for s in SITES] + ["pooled test set (median of 6)"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6), sharey=True)
    for ax, key, title in zip(axes, panels, titles, strict=True):
        for arm, curve in record["curves"].items():
            style = "--" if arm.startswith("local") else "-"
            ax.plot([p["epochs"] for p in curve], [p[key] for p in curve], style, label=arm, linewidth=1.4)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epochs of compute (rounds x local epochs)", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test Dice")
    axes[-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)


def write_outputs(doc: Path, record: dict) -> None:
    """The Markdown tables, the JSON and the PNG beside it; a hand-written "## Reading" section is kept."""
    from nnunet_recur.atomic_io import write_json_atomic, write_text_atomic

    write_json_atomic(doc.with_suffix(".json"), record)
    if record["curves"]:
        plot(record, doc.with_suffix(".png"))
    s, t = record["settings"], record["timings"]
    extra = [a for a in record["federated_rounds"]]
    lines = [
        "# Federated training: local-only vs federated vs pooled (issue 22 §4)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on the development machine (2 x86-64 cores shared with "
        "other sessions, no GPU; times are noisy) with "
        + "; ".join(f"`{c}`" for c in s.get("commands", []))
        + (
            f" ({s['parallel_runs']} runs merged with `--merge`; runs that shared the machine at the same "
            "time have inflated wall times)"
            if s.get("parallel_runs", 1) > 1
            else ""
        )
        + ".",
        "",
        "**What this is, and is not.** A CPU toy: the tiny CT/PET blob cases of the nnU-Net tests, "
        f"3 sites with {'/'.join(str(v) for v in SITES.values())} training cases and {s['test_per_site']} "
        f"test cases each, one central plan, the network narrowed to {s['features']} features, "
        f"{s['trainer']}. Every arm gets the same budget of {s['budget_epochs']} epochs of compute: "
        f"local-only and pooled train {s['budget_epochs']} epochs in one run; federated runs R rounds x E "
        "local epochs with R x E the same. It is **not** the 3-site synthetic relapse cohort of "
        "`recur synth --sites` (see the end of this page for what that study needs). The same code paths "
        "run (`run_round` is what the Flower ClientApp executes, `fedavg` what the ServerApp executes); "
        "Flower's transport is measured by the deployment test.",
        "",
        "Test Dice of the final models (whole volumes, the trainer's validation predictor, hard Dice per "
        "case), on each site's own test cases (mean of its 2 cases) and on the pooled test set of all "
        f"{len(record['per_case_site'])} cases:",
        "",
        *final_table(record),
        "",
        "Best point on each curve (no model selection is done on it: the test cases are the validation "
        "cases here, so this is an optimistic reading):",
        "",
        *best_table(record),
        "",
        f"Curves: test Dice vs epochs of compute (![curves]({doc.with_suffix('.png').name}); data in "
        f"`{doc.with_suffix('.json').name}`). Pooled test set, median over the "
        f"{len(record['per_case_site'])} cases:",
        "",
        *curve_table(record, "pooled_median"),
        "",
        "Smallest site (SITE_C) test cases, mean of 2:",
        "",
        *curve_table(record, "SITE_C"),
        "",
        "Wall time: setup (cases, `recur plan`, evaluator) "
        f"{t.get('setup_s', 0):.0f} s; "
        + "; ".join(f"{k[:-2]} {v:.0f} s" for k, v in t.items() if k.endswith("_s") and k != "setup_s")
        + ".",
    ]
    for arm in extra:
        log = record["federated_rounds"][arm]
        secs = sorted(r["seconds"] for r in log)
        lines.append(
            f"{arm}: {len(log)} rounds, median {secs[len(secs) // 2]:.1f} s per round "
            f"(min {secs[0]:.1f}, max {secs[-1]:.1f}; sites one after another in one process)."
        )
    lines += [
        "",
        f"Bytes per round (weights down and up, {len(SITES)} sites, float32): "
        f"{record['bytes_per_round'] / 1e6:.2f} MB.",
        "",
    ]
    reading = ""
    if doc.is_file():
        old = doc.read_text(encoding="utf-8")
        if "\n## Reading" in old:
            reading = old[old.index("\n## Reading") + 1 :]
    write_text_atomic(doc, "\n".join(lines) + ("\n" + reading if reading else ""))


if __name__ == "__main__":
    main()
