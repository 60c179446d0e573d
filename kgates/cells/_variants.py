"""Greff et al.'s LSTM variants ("LSTM: A Search Space Odyssey", 2015) as presets of
the general cell options."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any


def _frozen(options: dict[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(
        {k: MappingProxyType(v) if isinstance(v, dict) else v for k, v in options.items()}
    )


# Each preset is only a combination of the general options; read-only.
VARIANTS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        name: _frozen(options)
        for name, options in {
            "V": {"peephole": True},
            "NP": {},
            "NIG": {"peephole": True, "pin": {"i": 1.0}},
            "NFG": {"peephole": True, "pin": {"f": 1.0}},
            "NOG": {"peephole": True, "pin": {"o": 1.0}},
            "NIAF": {"peephole": True, "input_activation": None},
            "NOAF": {"peephole": True, "output_activation": None},
            "CIFG": {"peephole": True, "coupled": True},
            "FGR": {"peephole": True, "gate_recurrence": True},
        }.items()
    }
)

OPTION_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "peephole": False,
        "pin": {},
        "coupled": False,
        "input_activation": "default",
        "output_activation": "default",
        "gate_recurrence": False,
    }
)
# An option left at this value was not given: the variant's value (or the
# default) applies.
_UNSET: Mapping[str, Any] = MappingProxyType(
    {
        "peephole": None,
        "pin": None,
        "coupled": None,
        "input_activation": "default",
        "output_activation": "default",
        "gate_recurrence": None,
    }
)


def resolve_options(variant: str | None, given: dict[str, Any]) -> dict[str, Any]:
    """The cell options of `variant` (or the defaults), overridden by those `given`."""
    if variant is None:
        preset = {}
    elif variant not in VARIANTS:
        raise ValueError(
            f"LSTMCell: unknown `variant` {variant!r}; expected one of {tuple(VARIANTS)} "
            "(Greff et al. 2015; see kgates.VARIANTS)."
        )
    else:
        preset = VARIANTS[variant]
    options = {}
    for name, default in OPTION_DEFAULTS.items():
        value = given[name]
        # a variant fixes every structural option (NP: no peepholes, V: not coupled...);
        # the activations only where it names them (NIAF, NOAF)
        fixed = variant is not None and (name in preset or not name.endswith("activation"))
        if value is _UNSET[name] or (isinstance(value, str) and value == "default"):
            value = preset.get(name, default)
        elif fixed and _plain(preset.get(name, default)) != _plain(value):
            raise ValueError(
                f"LSTMCell: variant={variant!r} sets `{name}`="
                f"{_plain(preset.get(name, default))!r}, "
                f"which conflicts with the given `{name}`={value!r}. Pass either "
                "the variant or the options."
            )
        options[name] = dict(value) if isinstance(value, Mapping) else value
    return options


def _plain(value):
    return dict(value) if isinstance(value, Mapping) else value
