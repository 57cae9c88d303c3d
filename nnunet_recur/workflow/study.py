"""`recur study`: the paper's study as a job graph, described once in a small TOML file.

    pretrain (HECKTOR) ──> AI finetune seed 0..K-1 ──> best seed ──> predict test ─┐
    AI random seed 0..K-1 ─────────────────────────> best seed ──> predict test ─┤
    SUVmax sweep (validation) -> SUVmax baseline, GTV baseline ───────────────────┴─> compare (Table 1)

Seeds: nnU-Net has no seed flag. The converter's ``--split paper`` writes five *identical* folds, and the
trainers seed themselves from the fold number, so fold k is "seed k". The best seed is chosen by the one rule
of the project, :func:`nnunet_recur.trainers.seeds.select_best_seed`, run as the public command
``recur best-seed ID -tr TRAINER`` (it writes ``seed_selection.json`` in the model folder); its fold is
then given to ``nnUNetv2_predict -f``.

A study file (every key optional except the datasets; see docs/cluster.md)::

    [study]
    folder = "study_paper"        # journal, logs, predictions, report
    [datasets]
    pretrain = 501                # HECKTOR (GTVp); leave out to train AI random only
    relapse = 502                 # the in-house relapse dataset (recur convert inhouse --split paper)
    [training]
    methods = ["AI random", "AI finetune"]   # + "PublishedCode random", "PublishedCode finetune"
    seeds = 5
    epochs = 0                    # 0 = the paper's recipe; N picks nnUNetTrainerRecur_<N>epochs
    device = "cuda"
    [prediction]
    save_probabilities = true
    disable_tta = false
    new_patient = "dicom/patient_017"  # optional: also run `recur predict` on one DICOM patient folder
    [evaluation]
    suvmax_fold = 0               # validation fold of the SUVmax-threshold sweep
    [executor]
    kind = "slurm"                # or "local" (with gpus = "0,1" for one job per GPU)
    max_retries = 2
    [executor.slurm]              # defaults for every job (resources.* override per stage)
    partition = "gpu"
    setup = ["module load cuda/12.1", "source ~/venvs/recur/bin/activate"]
    [resources.train]
    gpus_per_node = 1
    cpus_per_task = 8
    mem_gb = 32
    timeout_min = 1440

Split by job (one module each), re-exported here so ``from nnunet_recur.workflow.study import ...`` keeps
working: the method registry (``study_methods``), the job builders (``study_jobs``), the study file
(``study_file``) and the executor factory (``study_executors``).
"""

from __future__ import annotations

from nnunet_recur.nnunet_names import CONFIGURATION  # noqa: F401
from nnunet_recur.nnunet_names import PLANS_NAME as PLANS  # noqa: F401
from nnunet_recur.workflow.study_executors import (  # noqa: F401
    make_executors,
    slurm_profiles,
)
from nnunet_recur.workflow.study_file import (  # noqa: F401
    ExecutorConfig,
    StudyConfig,
    apply_overrides,
    build_study,
    dataset_folder_name,
    load_study,
    nnunet_paths,
)
from nnunet_recur.workflow.study_jobs import (  # noqa: F401
    StudyLayout,
    StudyPlan,
    best_percent,
    nnunet_job_env,
    patient_prediction_jobs,
    selected_fold,
    study_jobs,
    test_cases,
    train_job,
)
from nnunet_recur.workflow.study_methods import (  # noqa: F401
    METHODS,
    NNUNET_VARS,
    PAPER_MAX_EPOCHS,
    PRETRAIN_FOLD,
    PRETRAIN_TRAINER,
    Method,
    MethodSpec,
    StudyError,
    available_trainers,
    epoch_variants,
    ext_trainer_path,
    full_recipe,
    pretrain_trainer_for,
    resolve_methods,
    trainer_for,
)
