"""Decisions and the complaint-prior correction (model.decisions)."""

from __future__ import annotations

import numpy as np
import pytest

from model.bundle import BundleError
from model.decisions import decide_arrays, shift_complaint_prior

SEV = np.array([[0.6, 0.1, 0.1, 0.1, 0.1], [0.2, 0.1, 0.1, 0.5, 0.1], [0.45, 0.05, 0.3, 0.1, 0.1]])


def test_severity_is_none_exactly_when_not_a_complaint() -> None:
    dec = decide_arrays(SEV, np.array([0.2, 0.7, 0.5]), np.ones((3, 3)) / 3, 0.5, 0.5)
    assert dec.is_complaint.tolist() == [False, True, True]
    assert dec.severity.tolist() == [0, 3, 2]  # row 3: P(none) is the top score, but P(complaint) = 0.55
    assert dec.private_followup.tolist() == [False, True, True]


def test_prior_shift_moves_only_the_complaint_balance() -> None:
    shifted = shift_complaint_prior(SEV, train_rate=0.6, target_rate=0.3)
    np.testing.assert_allclose(shifted.sum(1), 1.0)
    assert (shifted[:, 0] > SEV[:, 0]).all()  # fewer complaints expected: P(none) rises
    np.testing.assert_array_equal(shifted[:, 1:].argmax(1), SEV[:, 1:].argmax(1))
    # Bayes' rule: the odds of complaint scale by (target / (1 - target)) / (train / (1 - train))
    odds = lambda p: (1 - p[:, 0]) / p[:, 0]  # noqa: E731
    np.testing.assert_allclose(odds(shifted) / odds(SEV), (0.3 / 0.7) / (0.6 / 0.4))
    np.testing.assert_allclose(shift_complaint_prior(SEV, 0.6, 0.6), SEV)


def test_prior_shift_needs_a_recorded_training_rate() -> None:
    with pytest.raises(BundleError, match="training complaint rate"):
        shift_complaint_prior(SEV, train_rate=0.0, target_rate=0.3)
    with pytest.raises(BundleError, match="between|in \\(0, 1\\)"):
        shift_complaint_prior(SEV, train_rate=0.5, target_rate=1.5)
