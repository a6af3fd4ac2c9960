"""The population a model card says the model was validated on, checked for one study.

A study outside it still gets the model's answer, marked with these warnings.
"""

FRONTAL_VIEWS = {"PA", "AP"}
VIEW_NAMES = {"LAT": "lateral", "LL": "lateral", "RL": "lateral", "LATERAL": "lateral", "UNK": "of unrecorded view"}


def intended_use_warnings(card, *, age_years, view=None):
    """Warnings (strings for people) for a study of this age (years or None) and view (PA, AP, LAT, …)."""
    warnings = []
    low, high = (card or {}).get("validated_age_range_years") or (None, None)
    if low is not None:
        if age_years is None:
            warnings.append(f"No age given: the model was validated on patients aged {low:g}–{high:g} years only.")
        elif not low <= float(age_years) <= high:
            warnings.append(
                f"Age {float(age_years):g} years is outside the ages the model was validated on "
                f"({low:g}–{high:g} years): its answer is less reliable."
            )
    if view and view.upper() not in FRONTAL_VIEWS:
        name = VIEW_NAMES.get(view.upper(), view)
        warnings.append(f"The model was validated on frontal (PA/AP) chest X-rays only; this study is {name}.")
    return warnings
