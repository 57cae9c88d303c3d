"""Significance tests: the numbers are scipy's, the bootstrap is seeded, small n is flagged."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from nnunet_recur.evaluation import stats

DICE_CNN = [0.25, 0.18, 0.47, 0.31, 0.05, 0.22, 0.61]
DICE_GTV = [0.29, 0.24, 0.64, 0.33, 0.12, 0.19, 0.70]


def test_paired_comparison_reports_scipy_values():
    result = stats.paired_comparison(DICE_CNN, DICE_GTV, seed=1)
    t = scipy_stats.ttest_rel(DICE_CNN, DICE_GTV)
    w = scipy_stats.wilcoxon(DICE_CNN, DICE_GTV)
    assert result["n"] == 7
    assert result["t_statistic"] == pytest.approx(t.statistic)
    assert result["t_p_value"] == pytest.approx(t.pvalue)
    assert result["wilcoxon_statistic"] == pytest.approx(w.statistic)
    assert result["wilcoxon_p_value"] == pytest.approx(w.pvalue)
    assert result["median_difference"] == pytest.approx(float(np.median(np.subtract(DICE_CNN, DICE_GTV))))


def test_bootstrap_ci_is_seeded_and_brackets_the_median():
    differences = np.subtract(DICE_CNN, DICE_GTV)
    low, high = stats.bootstrap_median_difference_ci(differences, seed=7)
    assert (low, high) == stats.bootstrap_median_difference_ci(differences, seed=7)
    assert low <= float(np.median(differences)) <= high
    assert low >= differences.min() and high <= differences.max()


def test_fisher_exact_on_po_counts():
    result = stats.fisher_po(6, 7, 5, 7)
    expected = scipy_stats.fisher_exact([[6, 1], [5, 2]])
    assert result["table"] == [[6, 1], [5, 2]]
    assert result["p_value"] == pytest.approx(expected.pvalue)
    assert result["odds_ratio"] == pytest.approx(expected.statistic)


def test_small_n_note_and_degenerate_inputs():
    note = stats.small_sample_note(7)
    assert "n = 7" in note and "0.0156" in note
    identical = stats.paired_comparison([0.2, 0.3, 0.4], [0.2, 0.3, 0.4])
    assert identical["wilcoxon_p_value"] == 1.0
    assert identical["t_p_value"] is None  # undefined (zero variance), not a crash or NaN in JSON
    single = stats.paired_comparison([0.2], [0.1])
    assert single["t_p_value"] is None and single["n"] == 1
