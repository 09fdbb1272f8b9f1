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

from urbanstack.ngsild.errors import BadRequestData
from urbanstack.ngsild.grammar import BooleanParser

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


class _Parser(BooleanParser[TypeExpr]):
    label = "type query"
    term_name = "type name"
    or_chars = "|,"
    and_chars = ";"
    max_depth = MAX_DEPTH

    def __init__(self, text: str, expand: Callable[[str], str]) -> None:
        super().__init__(text)
        self.expand = expand

    def combine(self, kind: str, terms: list[TypeExpr]) -> TypeExpr:
        return _combine(TypeAnd if kind == "and" else TypeOr, terms)

    def parse_term(self) -> TypeExpr:
        return self.parse_name()

    def parse_name(self) -> TypeName:
        self.count_term(MAX_TERMS)
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


def flat_type_names(expr: TypeExpr) -> list[str] | None:
    """The type IRIs of an expression that is only names joined by OR (an index lookup),
    else None."""
    if isinstance(expr, TypeName):
        return [expr.iri]
    if isinstance(expr, TypeOr):
        names: list[str] = []
        for term in expr.terms:
            sub = flat_type_names(term)
            if sub is None:
                return None
            names += sub
        return names
    return None


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
