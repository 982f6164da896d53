"""Student's t widening without scipy at run time, checked against scipy here."""

from __future__ import annotations

import pytest
from scipy.stats import t

from governor.core.widening import Z95, t975, widening


@pytest.mark.parametrize("nu", [*range(1, 41), 50, 75, 100, 250, 1000, 10_000])
def test_the_quantile_matches_scipys_to_four_decimals(nu: int) -> None:
    assert t975(nu) == pytest.approx(float(t.ppf(0.975, nu)), abs=1e-4)


def test_widening_is_one_for_many_degrees_of_freedom_and_grows_for_few() -> None:
    assert widening(1_000_000) == pytest.approx(1.0, abs=1e-4)
    assert widening(2) == pytest.approx(4.3027 / Z95, rel=1e-4)
    assert widening(0) == widening(1) == pytest.approx(12.7062 / Z95, rel=1e-4)  # nothing left: the widest
    assert all(widening(n) > widening(n + 1) for n in range(1, 60))


def test_fewer_than_one_degree_of_freedom_is_refused_by_the_quantile() -> None:
    with pytest.raises(ValueError, match="degrees of freedom"):
        t975(0.5)
