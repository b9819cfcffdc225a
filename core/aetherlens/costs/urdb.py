"""OpenEI Utility Rate Database (URDB) JSON → our tariff model, exactly as CONTRACT.md describes.

Accepts a rate object, a list of them, or an API answer ``{"items": [...]}``; ``label`` picks one when
there are several. URDB rates carry no time zone or holidays: the caller supplies both.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal
from typing import Any

from aetherlens.costs.tariff import Tariff, parse_tariff
from aetherlens.errors import TariffError

_PER = {"$/month": "per_month", "$/day": "per_day", "$/year": "per_year"}


def is_urdb(data: Any) -> bool:
    if isinstance(data, list):
        return True
    if not isinstance(data, dict):
        return False
    return "items" in data or "energyratestructure" in data or ("label" in data and "periods" not in data)


def pick_rate(payload: Any, label: str | None) -> dict[str, Any]:
    rates: Any = payload
    if isinstance(payload, dict) and "items" in payload:
        rates = payload["items"]
    if isinstance(rates, dict):
        rates = [rates]
    if not isinstance(rates, list) or not all(isinstance(r, dict) for r in rates) or not rates:
        raise TariffError('URDB import: expected a rate object, a list of rates or {"items": [...]}')
    if label is not None:
        for rate in rates:
            if rate.get("label") == label:
                return dict(rate)
        raise TariffError(f"URDB import: no rate with label '{label}' (have: {_labels(rates)})")
    if len(rates) > 1:
        raise TariffError(
            f"URDB import: {len(rates)} rates in the file; pick one with --label ({_labels(rates)})"
        )
    return dict(rates[0])


def _labels(rates: list[dict[str, Any]]) -> str:
    return ", ".join(str(r.get("label", "?")) for r in rates[:20])


def _num(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TariffError(f"URDB import: {where} must be a number, not {value!r}")
    try:
        return Decimal(str(value))
    except ArithmeticError:
        raise TariffError(f"URDB import: {where} must be a number, not {value!r}") from None


def _tiers(structure: Any, p: int, field: str, unit_ok: tuple[str, ...]) -> list[dict[str, Any]]:
    tiers = structure[p]
    if not isinstance(tiers, list) or not tiers:
        raise TariffError(f"URDB import: {field}[{p}] must be a non-empty list of tiers")
    out: list[dict[str, Any]] = []
    for t, tier in enumerate(tiers):
        where = f"{field}[{p}][{t}]"
        if not isinstance(tier, dict):
            raise TariffError(f"URDB import: {where} must be an object with rate/max/adj")
        unit = tier.get("unit")
        if unit is not None and unit not in unit_ok:
            raise TariffError(
                f"URDB import: {where}.unit '{unit}' is not supported (only {', '.join(unit_ok)})"
            )
        price = _num(tier.get("rate", 0), f"{where}.rate") + _num(tier.get("adj", 0), f"{where}.adj")
        row: dict[str, Any] = {"price": str(price)}
        # The last tier is open-ended whatever its max says: energy beyond it is still billed.
        if tier.get("max") is not None and t < len(tiers) - 1:
            row["up_to"] = str(_num(tier["max"], f"{where}.max"))
        out.append(row)
    return out


def _schedule(matrix: Any, field: str, n_periods: int) -> list[list[int]]:
    if (
        not isinstance(matrix, list)
        or len(matrix) != 12
        or any(not isinstance(row, list) or len(row) != 24 for row in matrix)
    ):
        raise TariffError(f"URDB import: {field} must be 12 months x 24 hours")
    for m, row in enumerate(matrix):
        for h, value in enumerate(row):
            if not isinstance(value, int) or not 0 <= value < n_periods:
                raise TariffError(
                    f"URDB import: {field}[{m}][{h}] = {value!r} is not a period index 0..{n_periods - 1}"
                )
    return matrix


def _rules(weekday: list[list[int]], weekend: list[list[int]], period_of: Any) -> list[dict[str, Any]]:
    """12x24 matrices → rules; months with the same day profile share one rule per run of hours."""
    rules: list[dict[str, Any]] = []
    for day, matrix in (("weekday", weekday), ("weekend", weekend)):
        months_by_row: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for m, month_row in enumerate(matrix):
            months_by_row[tuple(month_row)].append(m + 1)
        for row, months in months_by_row.items():
            h = 0
            while h < 24:
                end = h
                while end < 24 and row[end] == row[h]:
                    end += 1
                name = period_of(row[h])
                if name is not None:
                    rules.append({"period": name, "hours": f"{h}-{end}", "days": [day], "months": months})
                h = end
    return rules


def urdb_to_tariff(
    rate: dict[str, Any], *, timezone: str, holidays: str | None = None, name: str | None = None
) -> Tariff:
    structure = rate.get("energyratestructure")
    if not isinstance(structure, list) or not structure:
        raise TariffError("URDB import: energyratestructure is missing or empty (no energy rates to bill)")
    n = len(structure)
    periods: dict[str, Any] = {}
    for p in range(n):
        tiers = _tiers(structure, p, "energyratestructure", ("kWh",))
        definition: dict[str, Any] = {"tiers": tiers} if len(tiers) > 1 else {"price": tiers[0]["price"]}
        sell = structure[p][0].get("sell")
        if sell is not None:
            definition["export_price"] = str(_num(sell, f"energyratestructure[{p}][0].sell"))
        periods[f"period_{p}"] = definition
    data: dict[str, Any] = {
        "name": name
        or " — ".join(str(x) for x in (rate.get("utility"), rate.get("name")) if x)
        or "URDB rate",
        "currency": "USD",
        "timezone": timezone,
        "periods": periods,
        "source": {k: rate[k] for k in ("label", "utility", "name", "uri", "eiaid") if k in rate},
    }
    if holidays:
        data["holidays"] = holidays
    if n > 1 or "energyweekdayschedule" in rate:
        weekday = _schedule(rate.get("energyweekdayschedule"), "energyweekdayschedule", n)
        weekend = _schedule(rate.get("energyweekendschedule", weekday), "energyweekendschedule", n)
        data["schedule"] = _rules(weekday, weekend, lambda i: f"period_{i}")
    data["fixed"] = _charge(rate, "fixedchargefirstmeter", "fixedchargeunits")
    data["minimum"] = _charge(rate, "mincharge", "minchargeunits")
    data["demand"] = _demand(rate)
    start = rate.get("startdate")
    data["effective_from"] = _start(start) if start is not None else dt.datetime.now(dt.UTC).isoformat()
    return parse_tariff(data)


def _charge(rate: dict[str, Any], amount_key: str, unit_key: str) -> dict[str, str]:
    amount = rate.get(amount_key)
    if amount in (None, 0):
        return {}
    value = _num(amount, amount_key)
    unit = rate.get(unit_key, "$/month")
    kind = _PER.get(unit)
    if kind is None:
        raise TariffError(f"URDB import: {unit_key} '{unit}' is not supported (use one of {', '.join(_PER)})")
    if kind == "per_year":
        return {"per_month": str(value / 12)}
    return {kind: str(value)}


def _demand(rate: dict[str, Any]) -> dict[str, Any]:
    charges: list[dict[str, Any]] = []
    flat = rate.get("flatdemandstructure")
    if flat:
        months = rate.get("flatdemandmonths") or [0] * 12
        if not isinstance(months, list) or len(months) != 12:
            raise TariffError(
                "URDB import: flatdemandmonths must list a flat-demand period for each of 12 months"
            )
        for p in range(len(flat)):
            used = [m + 1 for m, idx in enumerate(months) if idx == p]
            if used:
                tiers = _tiers(flat, p, "flatdemandstructure", ("kW",))
                charges.append({"name": f"flat_demand_{p}", "tiers": tiers, "months": used})
    tou = rate.get("demandratestructure")
    if tou:
        n = len(tou)
        weekday = _schedule(rate.get("demandweekdayschedule"), "demandweekdayschedule", n)
        weekend = _schedule(rate.get("demandweekendschedule", weekday), "demandweekendschedule", n)
        for p in range(n):
            tiers = _tiers(tou, p, "demandratestructure", ("kW",))
            if all(Decimal(t["price"]) == 0 for t in tiers):
                continue  # a zero-priced demand period charges nothing
            rules = _rules(weekday, weekend, lambda i, p=p: "x" if i == p else None)
            for rule in rules:
                rule.pop("period")
            if rules:
                charges.append({"name": f"demand_period_{p}", "tiers": tiers, "schedule": rules})
    out: dict[str, Any] = {"charges": charges}
    window = rate.get("demandwindow")
    if window is not None:
        out["window_minutes"] = int(_num(window, "demandwindow"))
    return out


def _start(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, dt.UTC).isoformat()
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            raise TariffError(
                f"URDB import: startdate '{value}' is neither epoch seconds nor ISO 8601"
            ) from None
        return parsed.isoformat()
    raise TariffError(f"URDB import: startdate {value!r} is neither epoch seconds nor ISO 8601")
