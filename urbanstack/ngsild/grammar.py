"""The boolean skeleton the NGSI-LD query languages share: terms joined by AND and OR,
with parentheses (AND binds tighter). ``q``, ``scopeQ`` and type expressions differ only
in their terms, separators and node classes, so each subclasses :class:`BooleanParser`.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from urbanstack.ngsild.errors import BadRequestData, TooComplexQuery

E = TypeVar("E")


class BooleanParser(Generic[E]):
    """Recursive descent over ``text``; subclasses give ``parse_term`` and ``combine``."""

    label = "query"  # how errors name the language ("q", "scopeQ", ...)
    term_name = "term"  # how errors name one term
    or_chars = "|"
    and_chars = ";"
    max_depth = 16

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.terms = 0

    # -- helpers

    def error(self, message: str, pos: int | None = None) -> BadRequestData:
        at = self.pos if pos is None else pos
        return BadRequestData(f"Invalid {self.label} at offset {at}: {message}")

    def describe(self, pos: int | None = None) -> str:
        at = self.pos if pos is None else pos
        if at >= len(self.text):
            return "end of input"
        return repr(self.text[at : at + 12])

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    # -- to provide

    def parse_term(self) -> E:
        """One term, starting at ``self.pos`` (not empty, not a parenthesis)."""
        raise NotImplementedError

    def combine(self, kind: str, terms: list[E]) -> E:
        """The node for ``terms`` joined by ``kind`` ("and" or "or"); one term stands alone."""
        raise NotImplementedError

    # -- the grammar

    def parse(self) -> E:
        """The whole text as one expression; trailing input is an error."""
        expr = self.parse_or(0)
        self.skip_ws()
        if self.pos < len(self.text):
            if self.peek() == ")":
                raise self.error("unbalanced ')'")
            separators = "', '".join(self.and_chars + self.or_chars)
            raise self.error(f"expected '{separators}' or end of input, found {self.describe()}")
        return expr

    def parse_or(self, depth: int) -> E:
        terms = [self.parse_and(depth)]
        while True:
            self.skip_ws()
            if not self.peek() or self.peek() not in self.or_chars:
                break
            self.pos += 1
            terms.append(self.parse_and(depth))
        return self.combine("or", terms)

    def parse_and(self, depth: int) -> E:
        terms = [self.parse_primary(depth)]
        while True:
            self.skip_ws()
            if not self.peek() or self.peek() not in self.and_chars:
                break
            self.pos += 1
            terms.append(self.parse_primary(depth))
        return self.combine("and", terms)

    def parse_primary(self, depth: int) -> E:
        self.skip_ws()
        char = self.peek()
        if char == "(":
            if depth >= self.max_depth:
                raise TooComplexQuery(
                    f"{self.label} nests parentheses deeper than {self.max_depth} levels"
                )
            open_at = self.pos
            self.pos += 1
            expr = self.parse_or(depth + 1)
            self.skip_ws()
            if self.peek() != ")":
                if self.pos >= len(self.text):
                    raise self.error("unbalanced '(' (never closed)", open_at)
                raise self.error(f"expected ')', found {self.describe()}")
            self.pos += 1
            return expr
        if char == "" or char in self.or_chars + self.and_chars + ")":
            found = repr(char) if char else "end of input"
            raise self.error(f"expected a {self.term_name}, found {found} (empty term)")
        return self.parse_term()

    def count_term(self, limit: int) -> None:
        """Refuse expressions of more than ``limit`` terms (TooComplexQuery)."""
        self.terms += 1
        if self.terms > limit:
            raise TooComplexQuery(f"{self.label} has more than {limit} {self.term_name}s")
