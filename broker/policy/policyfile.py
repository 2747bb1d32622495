"""The policy file (TOML, "policy as code"): ``parse_policy`` and ``dump_policy``. Format: docs/policy.md.

Parsing is all-or-nothing: a file with any problem raises ``PolicyError`` listing every problem with
its line, so an operator fixes the file in one pass and nothing half-valid is ever applied.
``dump_policy`` writes the same format in a stable order; ``parse_policy(dump_policy(d)) == d``.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from collections.abc import Callable, Mapping
from typing import Any

from broker.policy.checks import KnownServer, PolicyError, Problem, duplicate_ids, rule_findings
from broker.policy.document import (
    ALL,
    ClaimMatch,
    ClaimValue,
    Conditions,
    PolicyDocument,
    Rule,
    Scopes,
    Subjects,
    Targets,
)
from broker.policy.explain import timestamp

Path = tuple[str, ...]
RULE_FIELDS = ("id", "description", "effect", "scopes", "subjects", "targets", "conditions")
SUBJECT_FIELDS = ("users", "groups", "claims", "idps", "clients", "everyone")
TARGET_FIELDS = ("servers", "tags", "all")
CONDITION_FIELDS = ("clients", "acr", "amr", "not_before", "not_after")
HEADER = "# mcp-auth-broker access policy (format: docs/policy.md)\n"


class _Bad:
    """A value already reported as a problem."""


BAD = _Bad()


def parse_policy(text: str, known_servers: Mapping[str, KnownServer]) -> PolicyDocument:
    """The document in ``text``, checked against the registered servers; ``PolicyError`` lists every problem."""
    return _parse(text, known_servers)


def read_policy(text: str) -> PolicyDocument:
    """A stored, once-validated document: its structure is checked, not today's servers and scopes.

    (A server removed since the import must not make the policy in force unreadable.)
    """
    return _parse(text, None)


def _parse(text: str, known_servers: Mapping[str, KnownServer] | None) -> PolicyDocument:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError([_syntax_problem(str(exc), text)]) from None
    reader = _Reader(_LineMap(text))
    rules = reader.document(data)
    if known_servers is not None:
        reader.semantics(rules, known_servers)
    if reader.problems:
        raise PolicyError(sorted(reader.problems, key=lambda p: (p.line is None, p.line or 0)))
    return PolicyDocument(tuple(rule for _, rule in rules))


def _syntax_problem(message: str, text: str) -> Problem:
    found = re.search(r"\(at line (\d+), column \d+\)", message)
    last_line = len(text.rstrip("\n").split("\n"))
    line = int(found.group(1)) if found else (last_line if "end of document" in message else None)
    return Problem(line, None, f"TOML syntax error: {message}")


# -------------------------------------------------------------------- line numbers


_BARE = r"[A-Za-z0-9_-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"|\'[^\']*\''
_KEY_PART = re.compile(rf"\s*({_BARE}|{_QUOTED})\s*(\.|$)")
_KEY_LINE = re.compile(rf"^\s*((?:{_BARE}|{_QUOTED})(?:\s*\.\s*(?:{_BARE}|{_QUOTED}))*)\s*=")
_HEADER_LINE = re.compile(r"^\s*(\[\[?)([^\[\]]+)\]\]?\s*(?:#.*)?$")


def _key_parts(dotted: str) -> Path:
    parts, rest = [], dotted
    while rest.strip():
        found = _KEY_PART.match(rest)
        if found is None:
            break
        parts.append(found.group(1).strip("\"'"))
        rest = rest[found.end():]
    return tuple(parts)


class _LineMap:
    """Where each ``[[rules]]`` table and each key starts, from a scan of the (already valid) text."""

    def __init__(self, text: str):
        self.headers: list[int] = []
        self.keys: dict[tuple[int | None, Path], int] = {}
        rule: int | None = None
        table: Path = ()
        in_string = False
        for number, line in enumerate(text.split("\n"), start=1):  # TOML lines end at \n only
            toggles = (line.count('"""') + line.count("'''")) % 2 == 1  # a multi-line string opens or closes
            if in_string:
                in_string = not toggles
                continue
            in_string = toggles
            if header := _HEADER_LINE.match(line):
                rule, table = self._header(header.group(1), _key_parts(header.group(2)), rule, number)
            elif key := _KEY_LINE.match(line):
                self._record(rule, table + _key_parts(key.group(1)), number)

    def _header(self, brackets: str, parts: Path, rule: int | None, number: int) -> tuple[int | None, Path]:
        if parts == ("rules",) and brackets == "[[":
            self.headers.append(number)
            return len(self.headers) - 1, ()
        if parts[:1] == ("rules",) and rule is not None:
            self._record(rule, parts[1:], number)
            return rule, parts[1:]
        self._record(None, parts, number)
        return None, parts

    def _record(self, rule: int | None, path: Path, number: int) -> None:
        for end in range(1, len(path) + 1):
            self.keys.setdefault((rule, path[:end]), number)

    def line(self, rule: int | None, path: Path) -> int | None:
        for end in range(len(path), 0, -1):
            if (rule, path[:end]) in self.keys:
                return self.keys[(rule, path[:end])]
        if rule is not None and rule < len(self.headers):
            return self.headers[rule]
        return self.keys.get((None, ("rules",)))


# -------------------------------------------------------------------- reading


class _Reader:
    """Turns the TOML data into rules, recording a problem (with its line) for everything wrong."""

    def __init__(self, lines: _LineMap):
        self.lines = lines
        self.problems: list[Problem] = []
        self.reported: set[tuple[int | None, Path]] = set()
        self.rule_index: int | None = None
        self.rule_id: str | None = None

    def problem(self, path: Path, message: str) -> None:
        self.reported.add((self.rule_index, path))
        self.problems.append(Problem(self.lines.line(self.rule_index, path), self.rule_id, message))

    def document(self, data: dict[str, Any]) -> list[tuple[int, Rule]]:
        self.unknown((), data, ("rules",))
        raw_rules = data.get("rules", [])
        if not isinstance(raw_rules, list) or not all(isinstance(r, dict) for r in raw_rules):
            self.problem(("rules",), "rules must be tables: write each rule under a [[rules]] header")
            return []
        ids = [r.get("id") if isinstance(r.get("id"), str) else None for r in raw_rules]
        for n, message in duplicate_ids(ids):
            self.rule_index, self.rule_id = n, ids[n]
            self.problem(("id",), message)
        rules = []
        for n, raw in enumerate(raw_rules):
            self.rule_index, self.rule_id = n, ids[n]
            rule = self.rule(raw)
            if rule is not None:
                rules.append((n, rule))
        return rules

    def semantics(self, rules: list[tuple[int, Rule]], known: Mapping[str, KnownServer]) -> None:
        """The checks on meaning, skipping any key that already has a problem of its own."""
        for n, rule in rules:
            self.rule_index, self.rule_id = n, rule.id
            for path, message in rule_findings(rule, known):
                if not any(r == n and _overlaps(p, path) for r, p in self.reported):
                    self.problem(path, message)

    def unknown(self, path: Path, table: dict[str, Any], fields: tuple[str, ...]) -> None:
        for key in table:
            if key not in fields:
                self.problem((*path, key), f"unknown field {'.'.join((*path, key))!r} (known: {', '.join(fields)})")

    def rule(self, raw: dict[str, Any]) -> Rule | None:
        self.unknown((), raw, RULE_FIELDS)
        rule_id = self.required(raw, "id", "every rule needs an id")
        effect = self.required(raw, "effect", 'every rule needs an effect: "allow" or "deny"')
        if effect is not BAD and effect not in ("allow", "deny"):
            self.problem(("effect",), f'effect must be "allow" or "deny", not {effect!r}')
            effect = BAD
        description = self.field(raw, ("description",), _string, "")
        scopes = self.field(raw, ("scopes",), _scopes, ())
        subjects = self.section(raw, "subjects", SUBJECT_FIELDS, self.subjects, Subjects())
        targets = self.section(raw, "targets", TARGET_FIELDS, self.targets, Targets())
        conditions = self.section(raw, "conditions", CONDITION_FIELDS, self.conditions, Conditions())
        if effect is BAD:
            return None  # nothing more to say about a rule that is neither allow nor deny
        return Rule(id=rule_id if isinstance(rule_id, str) else "", effect=effect, subjects=subjects,
                    targets=targets, scopes=scopes, description=description, conditions=conditions)

    def required(self, raw: dict[str, Any], key: str, missing: str) -> Any:
        if key not in raw:
            self.problem((key,), missing)
            return BAD
        return self.field(raw, (key,), _string, BAD)

    def field(self, table: dict[str, Any], path: Path, convert: Callable[[Any], Any], default: Any) -> Any:
        """``convert`` the value at ``path`` (or return ``default`` when absent); a ``ValueError`` is a problem."""
        if path[-1] not in table:
            return default
        try:
            return convert(table[path[-1]])
        except ValueError as exc:
            self.problem(path, f"{'.'.join(path)}: {exc}")
            return default

    def section(self, raw: dict[str, Any], name: str, fields: tuple[str, ...], build: Callable[[dict[str, Any]], Any],
                empty: Any) -> Any:
        table = raw.get(name, {})
        if not isinstance(table, dict):
            self.problem((name,), f"{name} must be a table, e.g. [rules.{name}]")
            return empty
        self.unknown((name,), table, fields)
        return build(table)

    def subjects(self, table: dict[str, Any]) -> Subjects:
        lists = {key: self.field(table, ("subjects", key), _strings, ()) for key in ("users", "groups", "idps",
                                                                                     "clients")}
        return Subjects(**lists, claims=self.field(table, ("subjects", "claims"), _claims, ()),
                        everyone=self.field(table, ("subjects", "everyone"), _boolean, False))

    def targets(self, table: dict[str, Any]) -> Targets:
        return Targets(servers=self.field(table, ("targets", "servers"), _strings, ()),
                       tags=self.field(table, ("targets", "tags"), _strings, ()),
                       all=self.field(table, ("targets", "all"), _boolean, False))

    def conditions(self, table: dict[str, Any]) -> Conditions:
        lists = {key: self.field(table, ("conditions", key), _strings, ()) for key in ("clients", "acr", "amr")}
        instants = {key: self.field(table, ("conditions", key), _instant, None) for key in ("not_before",
                                                                                            "not_after")}
        return Conditions(**lists, **instants)


def _overlaps(a: Path, b: Path) -> bool:
    return a[:len(b)] == b or b[:len(a)] == a


# -------------------------------------------------------------------- value converters (ValueError: a problem)


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {_kind(value)}")
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, not {_kind(value)}")
    return value


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f'must be a list of strings, e.g. ["a", "b"], not {_kind(value)}')
    if not value:
        raise ValueError("an empty list matches nothing; fill it in or remove the key")
    if not all(item.strip() for item in value):
        raise ValueError("names must not be empty")
    return tuple(value)


def _scopes(value: Any) -> Scopes:
    if value == ALL:
        return ALL
    if isinstance(value, str):
        raise ValueError(f'must be a list of scope names or "*", not the string {value!r}')
    return _strings(value)


def _claims(value: Any) -> tuple[ClaimMatch, ...]:
    if not isinstance(value, dict) or not value:
        raise ValueError('must be a table of claim = value, e.g. { department = "finance" }')
    matches = []
    for name, wanted in value.items():
        if wanted == []:
            raise ValueError(f"{name}: an empty list matches nothing")
        items = wanted if isinstance(wanted, list) else [wanted]
        matches += [ClaimMatch(name, _claim_value(name, item)) for item in items]
    return tuple(matches)


def _claim_value(name: str, value: Any) -> ClaimValue:
    if not isinstance(value, str | int | bool):
        raise ValueError(f"{name}: a claim value must be a string, an integer or a boolean, not {_kind(value)}")
    return value


def _instant(value: Any) -> dt.datetime:
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a valid timestamp (RFC 3339, e.g. 2026-01-01T00:00:00Z)") from None
    if not isinstance(value, dt.datetime):
        raise ValueError(f"must be a timestamp with a UTC offset, e.g. 2026-01-01T00:00:00Z, not {_kind(value)}")
    if value.tzinfo is None:
        raise ValueError(f"{value.isoformat()} has no UTC offset; write it as e.g. 2026-01-01T00:00:00Z")
    return value


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    names = {str: "a string", int: "an integer", float: "a number", list: "a list", dict: "a table",
             dt.datetime: "a timestamp", dt.date: "a date", dt.time: "a time"}
    return next((text for kind, text in names.items() if isinstance(value, kind)), type(value).__name__)


# -------------------------------------------------------------------- writing


def dump_policy(document: PolicyDocument) -> str:
    """``document`` as a policy file: rules in document order, keys and values in a fixed order."""
    return HEADER + "".join("\n" + dump_rule(rule) for rule in document.rules)


def dump_rule(rule: Rule) -> str:
    """One ``[[rules]]`` table (with its sub-tables), ending in a newline."""
    lines = ["[[rules]]", f"id = {_toml_string(rule.id)}"]
    lines += [f"description = {_toml_string(rule.description)}"] if rule.description else []
    lines.append(f"effect = {_toml_string(rule.effect)}")
    if rule.scopes:
        lines.append(f"scopes = {_toml_string(ALL) if rule.scopes == ALL else _array(rule.scopes)}")
    for name, entries in (("subjects", _subject_lines(rule.subjects)), ("targets", _target_lines(rule.targets)),
                          ("conditions", _condition_lines(rule.conditions))):
        if entries:
            lines += ["", f"[rules.{name}]", *entries]
    return "\n".join(lines) + "\n"


def _subject_lines(s: Subjects) -> list[str]:
    lines = _list_lines((("users", s.users), ("groups", s.groups)))
    if s.claims:
        by_name: dict[str, list[ClaimValue]] = {}
        for claim in s.claims:
            by_name.setdefault(claim.name, []).append(claim.value)
        pairs = [f"{_toml_key(n)} = {_value(v[0]) if len(v) == 1 else _array(v)}" for n, v in by_name.items()]
        lines.append(f"claims = {{ {', '.join(pairs)} }}")
    lines += _list_lines((("idps", s.idps), ("clients", s.clients)))
    return lines + (["everyone = true"] if s.everyone else [])


def _target_lines(t: Targets) -> list[str]:
    return _list_lines((("servers", t.servers), ("tags", t.tags))) + (["all = true"] if t.all else [])


def _condition_lines(c: Conditions) -> list[str]:
    lines = _list_lines((("clients", c.clients), ("acr", c.acr), ("amr", c.amr)))
    lines += [f"not_before = {timestamp(c.not_before)}"] if c.not_before else []
    return lines + ([f"not_after = {timestamp(c.not_after)}"] if c.not_after else [])


def _list_lines(pairs: tuple[tuple[str, tuple[str, ...]], ...]) -> list[str]:
    return [f"{key} = {_array(values)}" for key, values in pairs if values]


def _array(values: tuple[ClaimValue, ...] | list[ClaimValue]) -> str:
    items = [_value(v) for v in values]
    one_line = f"[{', '.join(items)}]"
    if len(one_line) <= 100:
        return one_line
    return "[\n" + "".join(f"    {item},\n" for item in items) + "]"


def _value(value: ClaimValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int) else _toml_string(value)


def _toml_key(name: str) -> str:
    return name if re.fullmatch(_BARE, name) else _toml_string(name)


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped (TOML 1.0 §String)."""
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'
