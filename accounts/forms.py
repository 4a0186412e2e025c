from django import forms


class OneTimeCodeForm(forms.Form):
    otp = forms.CharField(
        label="One-time code",
        max_length=32,
        help_text="The 6 digits of your authenticator app, or one of your recovery codes.",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autofocus": True, "inputmode": "text"}),
    )
