"""Operating points per population and the age the model sees (ml/populations.py, ml/card.py, ml/intended_use.py)."""

import math

import pytest

from ml.card import ModelCard
from ml.intended_use import intended_use_warnings
from ml.populations import model_age, operating_points, point_for_age, validated_age_range

CARD = {
    "uses_age": True,
    "age_input_range_years": [7.0, 83.0],
    "populations": {
        "adult": {"threshold": 0.25, "temperature": 1.5, "age_band": [18, 121], "validated_ages": [18, 83],
                  "min_recall": 0.95},
        "pediatric": {"threshold": 0.20, "temperature": 1.0, "age_band": [0, 18], "validated_ages": [1, 17],
                      "min_recall": 0.98},
    },
}
PARSED = ModelCard.from_dict(CARD)


@pytest.mark.parametrize("age, population", [(0.5, "pediatric"), (3, "pediatric"), (17.99, "pediatric"),
                                             (18, "adult"), (64, "adult"), (120, "adult")])
def test_it_picks_the_point_of_the_band_the_age_falls_in(age, population):
    assert point_for_age(operating_points(CARD), age).population == population


def test_it_gives_a_study_without_age_the_more_sensitive_point():
    points = operating_points(CARD)
    assert list(points) == ["pediatric", "adult"]  # ordered by age band
    # Compared on the raw logit: 1.5 · logit(0.25) < 1.0 · logit(0.20), though 0.25 > 0.20.
    assert points["adult"].logit_threshold == pytest.approx(1.5 * math.log(0.25 / 0.75))
    assert point_for_age(points, None).population == "adult"


def test_it_reads_a_one_threshold_card_as_one_point_for_every_age():
    points = operating_points({"threshold": 0.23, "temperature": 1.05, "validated_age_range_years": [1, 5]})
    [(name, point)] = points.items()
    assert point_for_age(points, 70) is point and point.threshold == 0.23 and point.temperature == 1.05
    assert validated_age_range(points) == (1, 5)


@pytest.mark.parametrize("age, seen", [(None, None), (3, None), (6.9, None), (7, 7.0), (45, 45.0), (83, 83.0),
                                       (90, None)])
def test_it_feeds_the_age_branch_only_ages_it_learnt_from(age, seen):
    assert model_age(PARSED, age) == seen
    assert model_age(ModelCard.from_dict({**CARD, "uses_age": False}), age) is None


@pytest.mark.parametrize("age", [1, 3.5, 17, 18, 83])
def test_it_says_nothing_inside_the_validated_populations(age):
    assert intended_use_warnings(PARSED, age_years=age, view="PA") == []


@pytest.mark.parametrize("age", [0.5, 84, 100])
def test_it_warns_about_an_age_no_population_was_validated_on(age):
    [warning] = intended_use_warnings(PARSED, age_years=age, view="AP")
    assert f"Age {age:g} years is outside" in warning and "(1–83 years)" in warning


def test_it_names_the_point_a_study_without_age_took():
    [warning] = intended_use_warnings(PARSED, age_years=None)
    assert "No age given" in warning and "(adult)" in warning
