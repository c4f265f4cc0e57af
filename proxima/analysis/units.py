"""One unit for a selection: every asset's own units, converted with cf-units (UDUNITS-2,
the library CF itself names) to the units most of the assets use.
"""

from __future__ import annotations

from collections import Counter

import cf_units

from proxima.errors import ProximaError


class UnitsError(ProximaError):
    """Assets of one selection have missing, unknown or incompatible units."""


def _unit(text: str) -> cf_units.Unit:
    try:
        return cf_units.Unit(text)
    except ValueError as exc:
        raise UnitsError(f"units {text!r} are not UDUNITS units: {exc}") from exc


def linear(source: str, target: str) -> tuple[float, float]:
    """``(scale, offset)`` with ``value_target = value_source * scale + offset``.

    Raises:
        UnitsError: the units are unknown or not convertible.
    """
    a, b = _unit(source), _unit(target)
    if not a.is_convertible(b):
        raise UnitsError(f"{source!r} cannot be converted to {target!r}")
    offset = float(a.convert(0.0, b))
    return float(a.convert(1.0, b)) - offset, offset


def harmonize(
    role: str, variable: str, units: dict[str, str | None]
) -> tuple[str, dict[str, tuple[float, float]]]:
    """The common units of a selection and each asset's conversion to them.

    Args:
        role: ``selection`` or ``baseline``, for messages.
        variable: The variable's name, for messages.
        units: Asset (region:path) → the variable's units in that asset.

    Returns:
        (the units most assets use, path → (scale, offset) for the assets in others).

    Raises:
        UnitsError: an asset has no units, or units that cannot be converted to the
            common ones; the message names the assets.
    """
    missing = sorted(p for p, u in units.items() if not u)
    if missing:
        raise UnitsError(
            f"{role}: {variable} has no units in {len(missing)} asset(s) {missing[:5]}; "
            "values without units are never combined with others"
        )
    counts = Counter(u for u in units.values() if u)
    common = sorted(counts, key=lambda u: (-counts[u], u))[0]
    conversions: dict[str, tuple[float, float]] = {}
    refused: dict[str, list[str]] = {}
    for path, text in sorted(units.items()):
        if text == common:
            continue
        try:
            scale, offset = linear(str(text), common)
        except UnitsError:
            refused.setdefault(str(text), []).append(path)
            continue
        if (scale, offset) != (1.0, 0.0):
            conversions[path] = (scale, offset)
    if refused:
        listed = "; ".join(f"{u!r} in {paths[:5]}" for u, paths in sorted(refused.items()))
        raise UnitsError(
            f"{role}: {variable} is in {common!r} in most assets but in incompatible units "
            f"elsewhere: {listed}"
        )
    return common, conversions
