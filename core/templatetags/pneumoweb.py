from django import template

register = template.Library()


@register.filter
def percent(value, digits=1):
    """0.8734 → "87.3%"; blank for missing values."""
    if value is None or value == "":
        return ""
    return f"{float(value) * 100:.{int(digits)}f}%"
