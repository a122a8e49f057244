"""Claims' measured values as short readable lines, shared by CLAIMS.md and the gallery (no imports of either)."""

from __future__ import annotations

import math

from madlib.figures.verdicts import level_of

SHORT_LIST = 8  # lists up to this length are shown whole, longer ones as first -> last


def format_number(x, digits: int = 3) -> str:
    """A number to ``digits`` significant digits, without trailing zeros (0.87, 31.5, 2930, 1.4e-25)."""
    if x is None:
        return "n/a"  # to_jsonable stores NaN and inf as null
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int) and abs(x) < 100_000:
        return str(x)
    x = float(x)
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e5:
        text = f"{x:.{max(0, digits - 1 - math.floor(math.log10(abs(x))))}f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    mantissa, exponent = f"{x:.{digits - 1}e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _is_scalar(value) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def is_seed_spread(value) -> bool:
    """Whether ``value`` is a :func:`madlib.figures.seed_spread` dict: mean, std (min, max, seeds)."""
    return isinstance(value, dict) and {"mean", "std"} <= set(value) <= {"mean", "std", "min", "max", "seeds"}


def format_scalar(value) -> str:
    if isinstance(value, str):
        return value if value else '""'
    return format_number(value)


def format_list(items: list) -> str:
    """Short lists whole ([0.87, 0.542, 0.215]), long ones as first -> last with the length."""
    if not items:
        return "[]"
    if all(_is_scalar(v) for v in items):
        if len(items) <= SHORT_LIST:
            return "[" + ", ".join(format_scalar(v) for v in items) + "]"
        return f"{format_scalar(items[0])} → {format_scalar(items[-1])} ({len(items)} values)"
    if len(items) <= SHORT_LIST:  # e.g. one row per seed
        return "[" + "; ".join(format_inline(v) for v in items) + "]"
    return f"{format_inline(items[0])} … {format_inline(items[-1])} ({len(items)} items)"


def format_spread(spread: dict) -> str:
    """``mean ± std (n seeds)``; a per-generation mean becomes a list of such pairs."""
    mean, std, seeds = spread["mean"], spread["std"], spread.get("seeds")
    over = "" if seeds is None else f" ({seeds} seed{'s' if seeds != 1 else ''})"
    if _is_scalar(mean):
        return (format_number(mean) if seeds == 1 else f"{format_number(mean)} ± {format_number(std, 2)}") + over
    pairs = [format_number(m) if seeds == 1 else f"{format_number(m)} ± {format_number(s, 2)}"
             for m, s in zip(mean, std if isinstance(std, list) else [std] * len(mean))]
    if len(pairs) <= SHORT_LIST:
        return "[" + ", ".join(pairs) + "]" + over
    return f"{pairs[0]} → {pairs[-1]} ({len(pairs)} values){over}"


def format_inline(value) -> str:
    """One value on one line: a number, a spread, a list or a flat dict ``key: value, ...``."""
    if _is_scalar(value):
        return format_scalar(value)
    if is_seed_spread(value):
        return format_spread(value)
    if isinstance(value, list):
        return format_list(value)
    items = [f"{k}: {format_inline(v)}" for k, v in value.items()]
    more = len(items) - 12
    return ", ".join(items[:12]) + (f", … ({more} more)" if more > 0 else "")


def _one_line(value) -> bool:
    if _is_scalar(value) or is_seed_spread(value) or isinstance(value, list):
        return True
    return all(_is_scalar(v) or is_seed_spread(v) or (isinstance(v, list) and all(map(_is_scalar, v)))
               for v in value.values())


def measured_lines(value, prefix: str = "") -> list[str]:
    """A claim's measured value as short lines ``key: value``; nested dicts become ``outer · inner: value``."""
    if not isinstance(value, dict) or is_seed_spread(value):
        return [prefix + format_inline(value)]
    lines = []
    for key, item in value.items():
        if _one_line(item):
            lines.append(f"{prefix}{key}: {format_inline(item)}")
        else:
            lines += measured_lines(item, f"{prefix}{key} · ")
    return lines or [prefix + "{}"]


def interval_text(claim: dict) -> str:
    """The compared quantity, its estimate and interval against the margin, e.g.
    ``FID(std) - FID(SIMS) = 1.2 [0.4, 2.0] (95%), claimed > 0.5``; "" for a claim without a comparison."""
    comparison = claim.get("comparison")
    if not comparison:
        return ""
    iv = comparison["interval"]
    side = ">" if comparison["direction"] == "greater" else "<"
    return (f"{comparison['quantity']} = {format_number(iv['estimate'])} [{format_number(iv['low'])}, "
            f"{format_number(iv['high'])}] ({format_number(100 * iv['confidence'])}%, n = {iv['n']}), "
            f"claimed {side} {format_number(comparison['margin'])}")


def claim_lines(claim: dict) -> list[str]:
    """What a claim measured, as readable lines, then its interval against the margin (the compared quantity is shown
    once, by the interval line, even where ``measured`` also holds it)."""
    measured = claim["measured"]
    comparison = claim.get("comparison")
    if comparison and isinstance(measured, dict):
        measured = {k: v for k, v in measured.items() if k != comparison["quantity"]}
    return measured_lines(measured) + ([interval_text(claim)] if comparison else [])


def failed_preconditions(claim: dict) -> list[str]:
    """``name (requirement; measured ...)`` for each precondition of a claim that was not met."""
    return [f"{p['name']} ({p['requirement']}; measured {format_inline(p['measured'])})"
            for p in claim.get("preconditions") or [] if not p["met"]]


def explanation(claim: dict, limit: int = 180) -> str:
    """One line on why a claim did not hold: its own ``explanation`` if it has one; for a claim not testable the
    preconditions that failed; for an inconclusive one its interval against the margin; else the condition
    beside what was measured."""
    if claim.get("explanation"):
        return claim["explanation"]
    level = level_of(claim)
    if level == "not testable":
        text = "Not testable: " + "; ".join(failed_preconditions(claim))
    elif level == "inconclusive":
        text = "Inconclusive: the interval straddles the margin: " + interval_text(claim)
    else:
        text = f"Needs {claim['condition']}; measured {'; '.join(measured_lines(claim['measured']))}"
    return text if len(text) <= limit else text[:limit - 1].rsplit(" ", 1)[0] + " …"
