"""The paper's evaluation (II.F-II.H): metrics, points of origin, baselines, statistics, report.

Reads predictions and references from disk in nnU-Net's naming; imports no trainer. From the converter it
imports one function, on first use: the NIfTI truncation guard (``dataset_conversion.nifti_io``, with its
error types; called by ``volumes.require_complete``), so both sides refuse a cut-short file by one rule; and
``dp-qa`` reads RT Dose and RTSTRUCT files with the converter's readers (one reader per input kind).
Definitions and their differences from the authors' published code: docs/evaluation.md.
"""
