"""The capture report's wording: photo numbers and names turned into short English phrases.
"""

from __future__ import annotations

from typing import Sequence

MAX_NAMES_CHARS = 60
"""Sentences name the files too when the names take at most this many characters."""


def photo_ranges(numbers: Sequence[int]) -> list[tuple[int, int]]:
    """Consecutive numbers grouped: [3, 4, 5, 9, 12, 13] -> [(3, 5), (9, 9), (12, 13)]."""
    out: list[tuple[int, int]] = []
    for n in sorted(set(numbers)):
        if out and n == out[-1][1] + 1:
            out[-1] = (out[-1][0], n)
        else:
            out.append((n, n))
    return out


def join_and(items: Sequence[str]) -> str:
    """['a'] -> 'a'; ['a', 'b', 'c'] -> 'a, b and c'."""
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def range_items(ranges: list[tuple[int, int]], label) -> list[str]:
    items: list[str] = []
    for a, b in ranges:
        if b - a >= 2:
            items.append(f"{label(a)} to {label(b)}")
        else:
            items.extend(label(n) for n in range(a, b + 1))
    return items


def numbers_text(numbers: Sequence[int]) -> str:
    """'photos 12 to 15', 'photo 7', 'photos 3, 4 and 20 to 31': consecutive numbers become ranges."""
    ranges = photo_ranges(numbers)
    count = sum(b - a + 1 for a, b in ranges)
    return ("photo " if count == 1 else "photos ") + join_and(range_items(ranges, str))


def names_text(numbers: Sequence[int], names: dict[int, str], max_chars: int = MAX_NAMES_CHARS) -> str | None:
    """'IMG_12.jpg to IMG_15.jpg' (ranged as :func:`numbers_text`), or None when longer than max_chars."""
    named = join_and(range_items(photo_ranges(numbers), lambda n: names.get(n, str(n))))
    return named if len(named) <= max_chars else None


def describe_photos(numbers: Sequence[int], names: dict[int, str]) -> str:
    """'photos 12 to 15 (IMG_12.jpg to IMG_15.jpg)', 'photo 7 (IMG_7.jpg)', 'photos 3, 7 and 20 to 31'
    (the file names when they are short)."""
    named = names_text(numbers, names)
    return numbers_text(numbers) + (f" ({named})" if named else "")


def capital(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:]


def forms(count: int) -> dict[str, str]:
    one = count == 1
    return {"is": "is" if one else "are", "them": "it" if one else "them", "their": "its" if one else "their"}


def percent_span(values: Sequence[float]) -> str:
    lo, hi = round(100 * min(values)), round(100 * max(values))
    return f"{lo}%" if lo == hi else f"{lo}% to {hi}%"
