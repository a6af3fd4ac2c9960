"""Intended-use warnings from the model card's validated population (a parsed ml.card.ModelCard)."""

import pytest

from ml.card import ModelCard
from ml.intended_use import intended_use_warnings

CARD = ModelCard.from_dict({"validated_age_range_years": [1.0, 5.0]})


@pytest.mark.parametrize("age", [1, 3.5, 5])
def test_it_says_nothing_inside_the_validated_population(age):
    assert intended_use_warnings(CARD, age_years=age, view="PA") == []
    assert intended_use_warnings(CARD, age_years=age, view="AP") == []


@pytest.mark.parametrize("age", [0.5, 5.01, 45])
def test_it_warns_about_an_age_outside_the_validated_range(age):
    [warning] = intended_use_warnings(CARD, age_years=age, view="PA")
    assert f"Age {age:g} years is outside" in warning and "1–5 years" in warning


@pytest.mark.parametrize("view, name", [("LAT", "lateral"), ("LL", "lateral"), ("UNK", "of unrecorded view")])
def test_it_warns_about_a_view_other_than_frontal(view, name):
    [warning] = intended_use_warnings(CARD, age_years=3, view=view)
    assert warning.endswith(f"this study is {name}.")


def test_it_warns_twice_for_an_adult_lateral_and_once_for_a_missing_age():
    assert len(intended_use_warnings(CARD, age_years=45, view="LAT")) == 2
    assert "No age given" in intended_use_warnings(CARD, age_years=None)[0]


def test_it_has_no_age_rule_for_a_card_without_a_range():
    assert intended_use_warnings(ModelCard.from_dict({}), age_years=80, view="PA") == []
