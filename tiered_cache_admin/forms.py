"""The actions' forms: what each asks for, and how it is checked."""

from __future__ import annotations

from django import forms

from tiered_cache.stats import POOLED_GROUPS

from .actions import ALL_TIERS

__all__ = ["ClearTierForm", "InspectForm", "InvalidateGroupForm", "InvalidateKeyForm"]

_KEY_HELP = "The key as application code passes it to cache.get (no prefix)."


class InspectForm(forms.Form):
    key = forms.CharField(max_length=1000, strip=False, help_text=_KEY_HELP)
    version = forms.IntegerField(required=False, help_text="Default: the cache's.")


class ClearTierForm(forms.Form):
    tier = forms.ChoiceField()

    def __init__(self, *args, tiers: list[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["tier"].choices = [(name, name) for name in tiers] + [
            (ALL_TIERS, "every tier (cache.clear(), announced to every process)")
        ]


class InvalidateKeyForm(forms.Form):
    key = forms.CharField(max_length=1000, strip=False, help_text=_KEY_HELP)


class InvalidateGroupForm(forms.Form):
    group = forms.RegexField(
        regex=r"^[^\s:]{1,200}$",
        help_text='Keys starting with "<group>:" are deleted.',
        error_messages={"invalid": "A group is the text before the first ':'."},
    )

    def clean_group(self) -> str:
        group = self.cleaned_data["group"]
        if group in POOLED_GROUPS:
            raise forms.ValidationError(
                f'"{group}" pools many prefixes ("-": keys with no ":", "other": '
                "the groups past METRICS GROUPS): it names no keys to invalidate."
            )
        return group
