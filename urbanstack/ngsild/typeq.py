"""The NGSI-LD Entity Type Selection Language: the ``type`` parameter (clause 4.17).

``Building,House`` and ``Building|House`` select entities of type Building or House;
``(Home;Vehicle)`` entities that have both types; ``(Home;Vehicle)|Motorhome`` either.
``;`` binds tighter than ``|``/``,`` and parentheses may nest (the clause 4.17 grammar
only allows one level of parentheses, around an AND; this parser accepts a superset).
Whitespace around names and separators is ignored.

Names are entity type names (clause 4.6.2: ``Building``, ``ex:Building``) or absolute
IRIs, each expanded with ``expand``. As clause 4.17 notes, ``,`` ``;`` ``(`` ``)`` are
legal URI characters but always act as operators here; besides those and ``|``, a
name may not hold whitespace, control characters or ``" ' < > = \\ ^ ` { } [ ] ! ? & %
*``, and must start with a letter or ``_``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from urbanstack.ngsild.errors import BadRequestData, TooComplexQuery

MAX_TERMS = 64
MAX_DEPTH = 16
MAX_NAME_LENGTH = 512

_FORBIDDEN = frozenset("\"'<>=\\^`{}[]!?&%*")
_SEPARATORS = frozenset(",|;()")


@dataclass(frozen=True)
class TypeName:
    """An entity type, as an expanded IRI."""

    iri: str


@dataclass(frozen=True)
class TypeAnd:
    """The entity has every one of these types (at least two terms)."""

    terms: tuple[TypeExpr, ...]


@dataclass(frozen=True)
class TypeOr:
    """The entity matches at least one of these terms (at least two terms)."""

    terms: tuple[TypeExpr, ...]


TypeExpr = TypeName | TypeAnd | TypeOr


class _Parser:
    def __init__(self, text: str, expand: Callable[[str], str]) -> None:
        self.text = text
        self.expand = expand
        self.pos = 0
        self.terms = 0

    def error(self, message: str, pos: int | None = None) -> BadRequestData:
        at = self.pos if pos is None else pos
        return BadRequestData(f"Invalid type query at offset {at}: {message}")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def parse(self) -> TypeExpr:
        expr = self.parse_or(0)
        self.skip_ws()
        if self.pos < len(self.text):
            if self.peek() == ")":
                raise self.error("unbalanced ')'")
            raise self.error(f"unexpected {self.text[self.pos :]!r}")
        return expr

    def parse_or(self, depth: int) -> TypeExpr:
        terms = [self.parse_and(depth)]
        while True:
            self.skip_ws()
            if self.peek() not in ("|", ","):
                break
            self.pos += 1
            terms.append(self.parse_and(depth))
        return _combine(TypeOr, terms)

    def parse_and(self, depth: int) -> TypeExpr:
        terms = [self.parse_primary(depth)]
        while True:
            self.skip_ws()
            if self.peek() != ";":
                break
            self.pos += 1
            terms.append(self.parse_primary(depth))
        return _combine(TypeAnd, terms)

    def parse_primary(self, depth: int) -> TypeExpr:
        self.skip_ws()
        char = self.peek()
        if char == "(":
            if depth >= MAX_DEPTH:
                raise TooComplexQuery(f"type query nests parentheses deeper than {MAX_DEPTH}")
            open_at = self.pos
            self.pos += 1
            expr = self.parse_or(depth + 1)
            self.skip_ws()
            if self.peek() != ")":
                raise self.error("unbalanced '(' (never closed)", open_at)
            self.pos += 1
            return expr
        if char == "" or char in _SEPARATORS:
            found = repr(char) if char else "end of input"
            raise self.error(f"expected a type name, found {found} (empty term)")
        return self.parse_name()

    def parse_name(self) -> TypeName:
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise TooComplexQuery(f"type query has more than {MAX_TERMS} type names")
        start = self.pos
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in _SEPARATORS or char.isspace():
                break
            self.pos += 1
        name = self.text[start : self.pos]
        if len(name) > MAX_NAME_LENGTH:
            raise self.error(f"type name longer than {MAX_NAME_LENGTH} characters", start)
        if not (name[0].isalpha() or name[0] == "_"):
            raise self.error(f"type name {name!r} must start with a letter", start)
        for i, char in enumerate(name):
            if char in _FORBIDDEN or not char.isprintable():
                raise self.error(
                    f"character {char!r} is not allowed in type name {name!r}", start + i
                )
        iri = self.expand(name)
        if not isinstance(iri, str) or not iri:
            raise self.error(f"type name {name!r} does not expand to an IRI", start)
        return TypeName(iri)


def _combine(cls: type[TypeAnd] | type[TypeOr], terms: list[TypeExpr]) -> TypeExpr:
    if len(terms) == 1:
        return terms[0]
    flat: list[TypeExpr] = []
    for term in terms:
        flat.extend(term.terms if isinstance(term, cls) else (term,))
    # drop repeated terms, keeping the first occurrence (A,A is just A)
    unique = tuple(dict.fromkeys(flat))
    return unique[0] if len(unique) == 1 else cls(unique)


def parse_type_query(text: str, expand: Callable[[str], str]) -> TypeExpr:
    """Parse the ``type`` parameter (already URL-decoded) into a ``TypeExpr``.

    Type names are expanded with ``expand``; ``BadRequestData`` names the offending
    offset of an invalid expression, ``TooComplexQuery`` beyond the module limits.
    """
    if not isinstance(text, str) or not text.strip():
        raise BadRequestData("Invalid type query: the type parameter is empty")
    return _Parser(text, expand).parse()


def match_types(expr: TypeExpr, types: list[str]) -> bool:
    """Whether an entity whose (expanded) type list is ``types`` matches ``expr``."""
    if isinstance(expr, TypeName):
        return expr.iri in types
    if isinstance(expr, TypeAnd):
        return all(match_types(term, types) for term in expr.terms)
    return any(match_types(term, types) for term in expr.terms)


def type_names(expr: TypeExpr) -> set[str]:
    """Every type IRI the expression mentions (an entity matching it has one of them)."""
    if isinstance(expr, TypeName):
        return {expr.iri}
    names: set[str] = set()
    for term in expr.terms:
        names |= type_names(term)
    return names
