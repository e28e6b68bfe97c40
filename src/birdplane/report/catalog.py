"""The report's words: one flat catalog file per language, `report/lang/<lang>.toml`.

A catalog maps keys to format strings with `str.format` placeholders (`{mse}`), or to lists of
them (table headers). It holds no logic: `birdplane.report.document` picks the key of the
sentence that applies (`task2.verdict.reduced` or `task2.verdict.not_reduced`) and passes the
values, already formatted here with the catalog's `number.*` entries (decimal mark, thousands
separator, the word for percentage points). Adding a language is adding a file: every catalog
must have the English one's keys, each with the same placeholders, which `load` checks.
"""

from __future__ import annotations

import re
import string
import tomllib
from pathlib import Path

from birdplane.errors import BirdplaneError

LANG_DIR = Path(__file__).parent / "lang"
REFERENCE = "en"  # the catalog every other one is checked against
_NAME = re.compile(r"[a-z]{2,3}([_-][A-Za-z0-9]{2,8})?")  # en, de, pt_BR: a file name, never a path

Entry = str | list[str]


class CatalogError(BirdplaneError):
    pass


def languages(directory: Path = LANG_DIR) -> list[str]:
    """The languages a report can be written in: the catalog files in `directory`."""
    return sorted(p.stem for p in directory.glob("*.toml") if _NAME.fullmatch(p.stem))


def placeholders(entry: Entry) -> set[str]:
    """The names of an entry's `{placeholders}`; a format spec or conversion (`{x:.2f}`, `{x!r}`) is
    refused, because values arrive formatted already, in the language's way."""
    names = set()
    for text in [entry] if isinstance(entry, str) else entry:
        for _, name, spec, conversion in string.Formatter().parse(text):
            if name is None:
                continue
            if not name.isidentifier() or spec or conversion:
                raise ValueError(
                    f"{{{name}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}} "
                    f"is not a plain placeholder: write {{name}} (numbers come formatted)"
                )
            names.add(name)
    return names


def read(path: Path) -> dict[str, Entry]:
    """A catalog file as {dotted key: entry}: TOML's dotted keys and tables are flattened."""
    try:
        with path.open("rb") as f:
            raw = tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise CatalogError(
            f'report catalog {path}: {e}: fix the TOML syntax (key = "text", one per line)'
        ) from None
    flat: dict[str, Entry] = {}

    def walk(prefix: str, table: dict) -> None:
        for key, value in table.items():
            if isinstance(value, dict):
                walk(f"{prefix}{key}.", value)
            elif isinstance(value, str):
                flat[prefix + key] = _unwrap(value)
            elif isinstance(value, list) and all(isinstance(v, str) for v in value):
                flat[prefix + key] = [_unwrap(v) for v in value]
            else:
                raise CatalogError(
                    f"report catalog {path}: {prefix + key} must be text in quotes or a list of texts"
                )

    walk("", raw)
    return flat


def _unwrap(text: str) -> str:
    """A text written over several lines (in triple quotes) is one line: each line break is one space,
    spaces at the start and end of a line do not count."""
    if "\n" not in text:
        return text
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def problems(entries: dict[str, Entry], reference: dict[str, Entry]) -> list[str]:
    """How a catalog differs from the reference: keys, entry kinds, list lengths, placeholders."""
    missing, unknown = reference.keys() - entries.keys(), entries.keys() - reference.keys()
    found = [f"missing {', '.join(sorted(missing))}"] if missing else []
    if unknown:
        found.append(f"unknown {', '.join(sorted(unknown))}")
    for key in sorted(entries.keys() & reference.keys()):
        ours, theirs = entries[key], reference[key]
        if isinstance(ours, str) != isinstance(theirs, str) or (
            isinstance(ours, list) and len(ours) != len(theirs)
        ):
            found.append(
                f"{key} must be {'text' if isinstance(theirs, str) else f'a list of {len(theirs)} texts'}"
            )
            continue
        try:
            if placeholders(ours) != placeholders(theirs):
                found.append(
                    f"{key} must use exactly {{{'}, {'.join(sorted(placeholders(theirs)))}}}"
                )
        except ValueError as e:
            found.append(f"{key}: {e}")
    return found


def load(lang: str, directory: Path = LANG_DIR) -> dict[str, Entry]:
    """The catalog of `lang` from `directory`, checked against the English one shipped here."""
    path = directory / f"{lang}.toml"
    if not _NAME.fullmatch(lang) or not path.is_file():
        raise CatalogError(
            f"no report language {lang!r}: choose one of {', '.join(languages(directory))} "
            f"or add {directory}/{lang}.toml (a copy of {REFERENCE}.toml, translated)"
        )
    entries = read(path)
    found = problems(entries, read(LANG_DIR / f"{REFERENCE}.toml"))
    if found:
        raise CatalogError(f"report catalog {path}: {'; '.join(found)}"[:2000])
    return entries


class Catalog:
    """One language: `t(key, **values)` is the sentence, `t.texts(key)` a table header, and the
    number methods write numbers with the catalog's decimal mark and thousands separator."""

    def __init__(self, lang: str, entries: dict[str, Entry]):
        self.lang, self.entries = lang, entries
        self.used: set[str] = set()  # keys looked up so far: lets a test find keys nothing uses
        self.decimal, self.thousands = self("number.decimal"), self("number.thousands")

    def __call__(self, key: str, **values) -> str:
        self.used.add(key)
        return self.entries[key].format_map(values)

    def texts(self, key: str, **values) -> list[str]:
        self.used.add(key)
        return [text.format_map(values) for text in self.entries[key]]

    # ---- numbers
    def _fixed(self, x: float, spec: str) -> str:
        return format(x, spec).replace(".", self.decimal)

    def num(self, x: float, digits: int = 4) -> str:
        return self._fixed(x, f".{digits}f")

    def pct(self, x: float) -> str:
        """Accuracies as percent with two decimals: exact for 2,000 validation images (steps of 0.05 %)."""
        return self._fixed(100 * x, ".2f") + " %"

    def rate(self, lr: float) -> str:
        """A learning rate as written in params.yaml: 0.01, 0.003, 1e-05 (no fixed decimals)."""
        return format(lr, "g").replace(".", self.decimal)

    def int(self, n: int) -> str:
        return f"{n:,}".replace(",", self.thousands)

    def points(self, d: float) -> str:
        """A signed difference of accuracies in percentage points."""
        return self._fixed(100 * d, "+.2f") + " " + self("number.points")

    def pp(self, d: float) -> str:
        """A difference of accuracies, unsigned, in percentage points."""
        return self._fixed(100 * d, ".2f") + " " + self("number.points")

    def seconds(self, s: float | None) -> str:
        return "?" if s is None else self._fixed(s, ".1f") + " s"

    def mean_std(self, mean: float, std: float) -> str:
        """Mean ± std over seeds: the mean in percent, the std in points without the word."""
        return f"{self.pct(mean)} ± {self._fixed(100 * std, '.2f')}"


def phrases(lang: str, directory: Path = LANG_DIR) -> Catalog:
    """The report's words in `lang`: `report/lang/<lang>.toml`, or the file of that name in `directory`."""
    return Catalog(lang, load(lang, directory))
