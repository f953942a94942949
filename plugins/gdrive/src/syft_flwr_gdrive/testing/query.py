"""The subset of Drive's ``q`` search language the fake understands.

Supported terms: ``'<id>' in parents``, ``'me'|'<email>' in owners``, ``name`` and ``mimeType``
with ``=``, ``!=`` and ``contains``, ``trashed = true|false``,
``appProperties has { key='k' and value='v' }``, combined with ``and``, ``or``, ``not`` and
parentheses. Anything else is a 400 error, exactly so that a client depending on a term the fake
does not model fails here instead of passing by accident.

One deliberate difference: Drive's ``name contains`` matches word prefixes, the fake matches any
substring. The plugin only ever asks with a prefix, which both agree on.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["FileView", "QueryError", "compile_query"]


class QueryError(ValueError):
    """The query is malformed or uses a term the fake does not support."""


@dataclass(frozen=True)
class FileView:
    """What a query can see of a file, from one account's point of view."""

    name: str
    mime_type: str
    parents: tuple[str, ...]
    owner: str
    app_properties: dict[str, str]
    viewer: str


Predicate = Callable[[FileView], bool]

_TOKEN_RE = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<op>!=|<=|>=|=|<|>|\(|\)|\{|\})"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))"
)


def _tokenize(query: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    query = query.rstrip()
    while position < len(query):
        match = _TOKEN_RE.match(query, position)
        if match is None or match.end() == position:
            raise QueryError(f"cannot parse query at {query[position : position + 20]!r}")
        position = match.end()
        kind = match.lastgroup or ""
        text = match.group(kind)
        if kind == "str":
            text = re.sub(r"\\(.)", r"\1", text[1:-1])
        tokens.append((kind, text))
    return tokens


class _Parser:
    def __init__(self, query: str) -> None:
        self.tokens = _tokenize(query)
        self.index = 0

    def parse(self) -> Predicate:
        predicate = self._or()
        if self.index != len(self.tokens):
            raise QueryError(f"unexpected {self.tokens[self.index][1]!r}")
        return predicate

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def _take(self, kind: str | None = None, text: str | None = None) -> str:
        token = self._peek()
        if token is None:
            raise QueryError("query ends too early")
        if (kind and token[0] != kind) or (text and token[1].lower() != text):
            raise QueryError(f"expected {text or kind}, got {token[1]!r}")
        self.index += 1
        return token[1]

    def _keyword(self, word: str) -> bool:
        token = self._peek()
        if token is not None and token[0] == "word" and token[1].lower() == word:
            self.index += 1
            return True
        return False

    def _or(self) -> Predicate:
        parts = [self._and()]
        while self._keyword("or"):
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else lambda f: any(p(f) for p in parts)

    def _and(self) -> Predicate:
        parts = [self._not()]
        while self._keyword("and"):
            parts.append(self._not())
        return parts[0] if len(parts) == 1 else lambda f: all(p(f) for p in parts)

    def _not(self) -> Predicate:
        if self._keyword("not"):
            inner = self._not()
            return lambda f: not inner(f)
        token = self._peek()
        if token == ("op", "("):
            self.index += 1
            inner = self._or()
            self._take("op", ")")
            return inner
        return self._term()

    def _term(self) -> Predicate:
        token = self._peek()
        if token is not None and token[0] == "str":
            value = self._take("str")
            self._take("word", "in")
            return _membership(value, self._take("word"))
        field = self._take("word")
        if field == "appProperties":
            return self._has()
        operator = self._take()
        if operator not in {"=", "!=", "contains"}:
            raise QueryError(f"operator {operator!r} is not supported by the fake")
        token = self._peek()
        if token is not None and token[0] == "word":
            return _boolean(field, operator, self._take("word"))
        return _comparison(field, operator, self._take("str"))

    def _has(self) -> Predicate:
        self._take("word", "has")
        self._take("op", "{")
        self._take("word", "key")
        self._take("op", "=")
        key = self._take("str")
        self._take("word", "and")
        self._take("word", "value")
        self._take("op", "=")
        value = self._take("str")
        self._take("op", "}")
        return lambda f: f.app_properties.get(key) == value


def _membership(value: str, collection: str) -> Predicate:
    if collection == "parents":
        return lambda f: value in f.parents
    if collection == "owners":
        return lambda f: f.owner == (f.viewer if value == "me" else value.lower())
    raise QueryError(f"'... in {collection}' is not supported by the fake")


def _boolean(field: str, operator: str, word: str) -> Predicate:
    if field != "trashed" or word not in {"true", "false"} or operator == "contains":
        raise QueryError(f"{field} {operator} {word} is not supported by the fake")
    expected = word == "true"
    # Nothing in the fake is ever in the trash: deletes are permanent.
    return (lambda f: not expected) if operator == "=" else (lambda f: expected)


def _comparison(field: str, operator: str, value: str) -> Predicate:
    getters: dict[str, Callable[[FileView], str]] = {
        "name": lambda f: f.name,
        "mimeType": lambda f: f.mime_type,
    }
    getter = getters.get(field)
    if getter is None:
        raise QueryError(f"field {field!r} is not supported by the fake")
    if operator == "=":
        return lambda f: getter(f) == value
    if operator == "!=":
        return lambda f: getter(f) != value
    if field != "name":
        raise QueryError("contains is only supported on name")
    return lambda f: value in getter(f)


def compile_query(query: str) -> Predicate:
    """Compile ``q`` into a predicate over :class:`FileView`; an empty query matches all.

    :raises QueryError: the query is malformed or unsupported.
    """
    if not query.strip():
        return lambda f: True
    return _Parser(query).parse()
