"""The paper's evaluation (II.F-II.H): metrics, points of origin, baselines, statistics, report.

Reads predictions and references from disk in nnU-Net's naming; imports no trainer. The NIfTI guard it
shares with the converter lives in the neutral ``nnunet_recur.nifti_header``, so both sides refuse a cut-short
file by one rule. The one use of the converter is ``dp-qa``, which reads RT Dose and RTSTRUCT files with the
converter's readers (one reader per input kind), imported when the command runs.
Definitions and their differences from the authors' published code: docs/evaluation.md.
"""
