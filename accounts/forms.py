from django import forms


class CodeForm(forms.Form):
    """One code: six digits from the authenticator app, or a recovery code. Named ``otp_token`` as in
    the token endpoint (and django-otp's own forms); axes masks it in what it records (AXES_SENSITIVE_PARAMETERS)."""

    otp_token = forms.CharField(
        label="One-time code", max_length=32,
        help_text="The six digits your authenticator app shows now, or one of your recovery codes.",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autofocus": True, "autocapitalize": "off",
                                      "spellcheck": "false"}),
    )
