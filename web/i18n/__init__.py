"""Message catalogues (Babel .po files, zh_CN default + en), compiled in memory when the process starts.

Why at start rather than committed .mo files: the .po files are the only source, nothing generated is
committed or can go stale, and compiling two small catalogues takes milliseconds. Template strings are
English msgids; zh_CN translates every one of them (a test checks that none is missing); en needs no
entries. Money is formatted with Babel from integer minor units through Decimal (never float).
"""

from __future__ import annotations

import gettext
import io
import re
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from babel import Locale, negotiate_locale
from babel.dates import format_datetime, get_timezone
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal

I18N_DIR = Path(__file__).parent
LOCALES: tuple[str, ...] = ("zh_CN", "en")
# What the language switch shows: each language's own name.
LOCALE_NAMES = {"zh_CN": "中文", "en": "English"}
HTML_LANG = {"zh_CN": "zh-CN", "en": "en"}
SHANGHAI = get_timezone("Asia/Shanghai")  # what users of a CNY wallet read times in
MINOR_DIGITS = {"CNY": 2, "USD": 2, "HKD": 2, "JPY": 0}


def load_catalogues(directory: Path = I18N_DIR) -> dict[str, gettext.NullTranslations]:
    catalogues: dict[str, gettext.NullTranslations] = {}
    for locale in LOCALES:
        po = directory / locale / "LC_MESSAGES" / "messages.po"
        if not po.exists():
            catalogues[locale] = gettext.NullTranslations()
            continue
        with po.open("rb") as f:
            catalog = read_po(f, locale=locale)
        buffer = io.BytesIO()
        write_mo(buffer, catalog)
        buffer.seek(0)
        catalogues[locale] = gettext.GNUTranslations(buffer)
    return catalogues


def choose_locale(asked: str | None, cookie: str | None, accept_language: str | None, default: str) -> str:
    """`?lang=` first (the switch), then the remembered choice, then the browser's Accept-Language."""
    for candidate in (asked, cookie):
        if candidate in LOCALES:
            return candidate
    preferred = _accept_language(accept_language or "")
    return negotiate_locale(preferred, LOCALES, sep="_") or negotiate_locale(preferred, LOCALES, sep="-") or default


def _accept_language(header: str) -> list[str]:
    """Language tags by their q value, highest first (`zh-CN,zh;q=0.9,en;q=0.8`)."""
    weighted: list[tuple[float, int, str]] = []
    for i, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if tag and q > 0:
            weighted.append((-q, i, tag.replace("-", "_")))
    tags = [tag for _, _, tag in sorted(weighted)]
    # "zh" alone (or zh_Hans) means simplified Chinese here; Babel's aliases map it too.
    return [*tags, *("zh_CN" for t in tags if t.lower().startswith("zh"))]


def money(amount_minor: int, currency: str, locale: str) -> str:
    digits = MINOR_DIGITS.get(currency, 2)
    return format_currency(Decimal(amount_minor).scaleb(-digits), currency, locale=Locale.parse(locale))


def number(value: int, locale: str) -> str:
    return format_decimal(value, locale=Locale.parse(locale))


def when(value: datetime | str, locale: str) -> str:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return format_datetime(moment, "short", tzinfo=SHANGHAI, locale=Locale.parse(locale))


def parse_amount_minor(text: str, currency: str = "CNY") -> int | None:
    """A yuan amount as typed (`300`, `300.5`, `300.50`) → minor units; None when it is not one."""
    digits = MINOR_DIGITS.get(currency, 2)
    cleaned = text.strip().replace(",", "")
    pattern = r"[0-9]{1,12}" + (rf"(\.[0-9]{{1,{digits}}})?" if digits else "")
    if not re.fullmatch(pattern, cleaned, flags=re.ASCII):
        return None
    whole, _, fraction = cleaned.partition(".")
    value = int(whole) * 10**digits + (int(fraction.ljust(digits, "0")) if fraction else 0)
    return value if value > 0 else None


def all_locales() -> Iterable[tuple[str, str]]:
    return LOCALE_NAMES.items()
