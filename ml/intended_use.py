"""The population a model card says the model was validated on, checked for one study. No torch.

A study outside it still gets the model's answer, marked with these warnings. The card is the
parsed ``ml.card.ModelCard`` (read once per checkpoint), not its raw dict.
"""

from .populations import point_for_age

FRONTAL_VIEWS = {"PA", "AP"}
VIEW_NAMES = {"LAT": "lateral", "LL": "lateral", "RL": "lateral", "LATERAL": "lateral", "UNK": "of unrecorded view"}


def intended_use_warnings(card, *, age_years, view=None):
    """Warnings (strings for people) for a study of this age (years or None) and view (PA, AP, LAT, …).

    ``card``: the checkpoint's ``ml.card.ModelCard`` (its operating points and validated ages).
    """
    warnings = []
    points = card.points
    validated = card.validated_age_range
    if age_years is None:
        if len(points) > 1:
            point = point_for_age(points, None)
            warnings.append(f"No age given: the most sensitive operating point ({point.population}) was used; "
                            "give the age to use the point validated on the patient's population.")
        elif validated:
            warnings.append(f"No age given: the model was validated on patients aged "
                            f"{validated[0]:g}–{validated[1]:g} years only.")
    elif validated and not validated[0] <= float(age_years) <= validated[1]:
        warnings.append(
            f"Age {float(age_years):g} years is outside the ages the model was validated on "
            f"({validated[0]:g}–{validated[1]:g} years): its answer is less reliable."
        )
    if view and view.upper() not in FRONTAL_VIEWS:
        name = VIEW_NAMES.get(view.upper(), view)
        warnings.append(f"The model was validated on frontal (PA/AP) chest X-rays only; this study is {name}.")
    return warnings
