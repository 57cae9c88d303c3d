"""The paper's evaluation (II.F-II.H): metrics, points of origin, baselines, statistics, report.

Reads predictions and references from disk in nnU-Net's naming; imports no trainer and no converter.
Definitions and their differences from the authors' published code: docs/evaluation.md.
"""
