"""NGSI-LD Scopes (clause 4.18) and the Scope Query Language ``scopeQ`` (clause 4.19).

A scope is a ``/``-separated hierarchical path such as ``/Madrid/Gardens``; an entity
holds a list of them. ``scopeQ`` selects entities by scope:

* ``/Madrid/Gardens`` matches an entity having exactly that scope;
* ``/Madrid/Gardens/#`` matches that scope and every scope below it;
* ``+`` matches exactly one level: ``/Madrid/+/ParqueNorte``;
* a lone ``/#`` matches every entity that has at least one scope;
* ``|`` and ``,`` are OR, ``;`` is AND, parentheses group. The clause 4.19 grammar
  requires parentheses around an AND (``(/a;/b)``) and allows them only there; this
  parser accepts any nesting and, like ``q``, lets ``;`` bind tighter than ``|``/``,``.
  An AND holds when each of its patterns matches one of the entity's scopes (not
  necessarily the same one). Entities without a scope match nothing.

Scope levels (stored and queried) are unicode letters, digits, ``_`` and ``-``; the
clause 4.18 grammar wants a letter first and no ``-``, accepted here as a harmless
extension. The leading ``/`` is optional in the grammar (``Madrid`` is the scope
``/Madrid``): ``validate_scope`` and the parser add it. Whitespace around patterns and
separators is ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from urbanstack.ngsild.errors import BadRequestData
from urbanstack.ngsild.grammar import BooleanParser

MAX_TERMS = 64
MAX_DEPTH = 16
MAX_SCOPE_LENGTH = 512
NGSI_LD_NULL = "urn:ngsi-ld:null"

_LEVEL_RE = re.compile(r"[\w\-]+")


@dataclass(frozen=True)
class ScopePattern:
    """One scope pattern: ``levels`` (``+`` matches any one level) and ``descendants``
    (a trailing ``/#``: the scope itself and everything below it). The lone ``/#`` is
    ``ScopePattern((), True)``: it matches any scope."""

    levels: tuple[str, ...]
    descendants: bool = False


@dataclass(frozen=True)
class ScopeAnd:
    """Every term matches one of the entity's scopes (at least two terms)."""

    terms: tuple[ScopeExpr, ...]


@dataclass(frozen=True)
class ScopeOr:
    """At least one term matches (at least two terms)."""

    terms: tuple[ScopeExpr, ...]


ScopeExpr = ScopePattern | ScopeAnd | ScopeOr


def _levels(scope: str) -> list[str]:
    return (scope[1:] if scope.startswith("/") else scope).split("/")


def validate_scope(scope: str) -> str:
    """Validate a scope value held by an entity and return it with a leading ``/``.

    Refuses non-strings, empty scopes and levels, wildcards (``+``, ``#``) and any
    character outside letters, digits, ``_`` and ``-`` with ``BadRequestData``. The
    NGSI-LD Null ``urn:ngsi-ld:null`` (part of the clause 4.18 grammar, meaning "delete
    the scope") is returned unchanged: the caller decides what it means.
    """
    if not isinstance(scope, str):
        raise BadRequestData(f"Invalid scope {scope!r}: a scope is a string such as /a/b")
    if scope == NGSI_LD_NULL:
        return scope
    if not scope or scope == "/":
        raise BadRequestData("Invalid scope: a scope must not be empty")
    if len(scope) > MAX_SCOPE_LENGTH:
        raise BadRequestData(f"Invalid scope: longer than {MAX_SCOPE_LENGTH} characters")
    for i, level in enumerate(_levels(scope), start=1):
        if not level:
            raise BadRequestData(f"Invalid scope {scope!r}: level {i} is empty")
        if level in ("+", "#") or "+" in level or "#" in level:
            raise BadRequestData(
                f"Invalid scope {scope!r}: wildcards '+' and '#' are only allowed in scopeQ"
            )
        if not _LEVEL_RE.fullmatch(level):
            raise BadRequestData(
                f"Invalid scope {scope!r}: level {level!r} may only hold letters, digits, "
                "'_' and '-'"
            )
    return scope if scope.startswith("/") else "/" + scope


class _Parser(BooleanParser[ScopeExpr]):
    label = "scopeQ"
    term_name = "scope"
    or_chars = "|,"
    and_chars = ";"
    max_depth = MAX_DEPTH

    def combine(self, kind: str, terms: list[ScopeExpr]) -> ScopeExpr:
        return _combine(ScopeAnd if kind == "and" else ScopeOr, terms)

    def parse_term(self) -> ScopeExpr:
        return self.parse_pattern()

    def parse_pattern(self) -> ScopePattern:
        self.count_term(MAX_TERMS)
        start = self.pos
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in ";|,()" or char.isspace():
                break
            self.pos += 1
        raw = self.text[start : self.pos]
        if len(raw) > MAX_SCOPE_LENGTH:
            raise self.error(f"scope longer than {MAX_SCOPE_LENGTH} characters", start)
        levels = _levels(raw)
        descendants = levels[-1] == "#"
        if descendants:
            levels.pop()
            if not levels:
                return ScopePattern((), True)
        for level in levels:
            if level == "+":
                continue
            if not level:
                raise self.error(f"scope {raw!r} has an empty level", start)
            if "#" in level:
                raise self.error(f"'#' is only allowed as the last level, in {raw!r}", start)
            if not _LEVEL_RE.fullmatch(level):
                raise self.error(f"invalid scope level {level!r} in {raw!r}", start)
        return ScopePattern(tuple(levels), descendants)


def _combine(cls: type[ScopeAnd] | type[ScopeOr], terms: list[ScopeExpr]) -> ScopeExpr:
    if len(terms) == 1:
        return terms[0]
    flat: list[ScopeExpr] = []
    for term in terms:
        flat.extend(term.terms if isinstance(term, cls) else (term,))
    return cls(tuple(flat))


def parse_scope_q(text: str) -> ScopeExpr:
    """Parse a ``scopeQ`` string (already URL-decoded); ``BadRequestData`` if invalid."""
    if not isinstance(text, str) or not text.strip():
        raise BadRequestData("Invalid scopeQ: the query is empty")
    return _Parser(text).parse()


def _pattern_matches(pattern: ScopePattern, scope: str) -> bool:
    levels = _levels(scope)
    wanted = pattern.levels
    if len(levels) < len(wanted) or (not pattern.descendants and len(levels) != len(wanted)):
        return False
    return all(w == "+" or w == level for w, level in zip(wanted, levels, strict=False))


def match_scope(expr: ScopeExpr, scopes: list[str]) -> bool:
    """Whether an entity holding ``scopes`` matches a parsed ``scopeQ``."""
    if isinstance(expr, ScopeAnd):
        return all(match_scope(term, scopes) for term in expr.terms)
    if isinstance(expr, ScopeOr):
        return any(match_scope(term, scopes) for term in expr.terms)
    return any(_pattern_matches(expr, scope) for scope in scopes if scope != NGSI_LD_NULL)


def scope_pattern_regex(pattern: ScopePattern) -> str:
    """An anchored regular expression (Python ``re`` syntax) matching the
    stored scopes (with their leading ``/``) that ``pattern`` matches."""
    parts = "".join(
        "/[^/]+" if level == "+" else "/" + re.escape(level) for level in pattern.levels
    )
    if pattern.descendants:
        return f"^{parts}(/.*)?$" if parts else "^/.+$"
    return f"^{parts}$"
