"""JSON-LD term handling without a JSON-LD processor on the hot path.

Each distinct ``@context`` is turned once into a :class:`TermMap` (term -> IRI and
IRI -> term); entities are then expanded and compacted with dictionary look-ups.
The ETSI core context is built in and always applies last, so its protected terms
cannot be redefined. Remote documents are fetched by the broker (this module does
no I/O): :func:`context_urls` lists what must be fetched and
:func:`build_term_map` takes the fetched documents.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources
from typing import Any

from urbanstack.ngsild.errors import BadRequestData, LdContextNotAvailable

CORE_CONTEXT_URL = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
CORE_CONTEXT_PREFIX = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context"
DEFAULT_VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"
NGSI_LD_NS = "https://uri.etsi.org/ngsi-ld/"
CONTEXT_REL = "http://www.w3.org/ns/json-ld#context"
JSON_LD_MEDIA = "application/ld+json"
MAX_CONTEXT_DEPTH = 8

JsonLdContext = str | Mapping[str, Any] | Sequence[Any] | None


@cache
def core_context_document(version: str = "1.8") -> dict[str, Any]:
    """The built-in ETSI core context document for ``version`` (1.8 or 1.9)."""
    name = f"ngsi-ld-core-context-v{version}.jsonld"
    text = resources.files("urbanstack.ngsild").joinpath("contexts", name).read_text("utf-8")
    return json.loads(text)


def is_core_context_url(url: str) -> bool:
    """True for every URL naming an ETSI core context version (never fetched)."""
    return url.startswith(CORE_CONTEXT_PREFIX)


def core_document_for(url: str) -> dict[str, Any]:
    """The built-in copy serving a core-context URL: v1.9 for 1.9, else v1.8."""
    return core_context_document("1.9" if "v1.9" in url else "1.8")


@dataclass(frozen=True)
class TermMap:
    """A processed @context: maps terms to IRIs and back.

    ``urls`` are the context URLs the map came from (what a Link header repeats);
    ``source`` is the context as the client gave it (for ld+json bodies).
    """

    terms: dict[str, str]
    vocab: str
    urls: tuple[str, ...] = ()
    source: Any = None
    reverse: dict[str, str] = field(default_factory=dict)
    prefixes: tuple[tuple[str, str], ...] = ()

    def expand(self, term: str) -> str:
        """Expand a term, compact IRI or absolute IRI to its full IRI."""
        iri = self.terms.get(term)
        if iri is not None:
            return iri
        colon = term.find(":")
        if colon > 0:
            prefix = term[:colon]
            base = self.terms.get(prefix)
            if base is not None and not term.startswith("//", colon + 1):
                return base + term[colon + 1 :]
            return term
        return self.vocab + term

    def compact(self, iri: str) -> str:
        """Compact an IRI to the shortest term this context knows for it."""
        term = self.reverse.get(iri)
        if term is not None:
            return term
        if iri.startswith(self.vocab) and len(iri) > len(self.vocab):
            rest = iri[len(self.vocab) :]
            if ":" not in rest and "/" not in rest and rest not in self.terms:
                return rest
        for prefix, base in self.prefixes:
            if iri.startswith(base) and len(iri) > len(base):
                return f"{prefix}:{iri[len(base) :]}"
        return iri


def _definitions(
    context: Any,
    documents: Mapping[str, Any],
    out: list[tuple[str, Any]],
    vocab: list[str],
    depth: int,
) -> None:
    if depth > MAX_CONTEXT_DEPTH:
        raise BadRequestData("The @context nests remote contexts too deeply")
    if context is None:
        return
    if isinstance(context, list | tuple):
        for item in context:
            _definitions(item, documents, out, vocab, depth)
        return
    if isinstance(context, str):
        if is_core_context_url(context):
            return
        doc = documents.get(context)
        if doc is None:
            raise LdContextNotAvailable(f"The @context {context!r} could not be retrieved")
        if not isinstance(doc, Mapping) or "@context" not in doc:
            raise LdContextNotAvailable(f"The document at {context!r} holds no @context member")
        _definitions(doc["@context"], documents, out, vocab, depth + 1)
        return
    if not isinstance(context, Mapping):
        raise BadRequestData("A @context must be a URL, an object or a list of them")
    for key, value in context.items():
        if key == "@vocab":
            if value is not None and not isinstance(value, str):
                raise BadRequestData("@vocab must be a string")
            vocab.append(value or DEFAULT_VOCAB)
        elif key.startswith("@"):
            continue
        else:
            out.append((key, value))


def _raw_iri(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        iri = value.get("@id")
        if iri is None and "@reverse" not in value:
            return ""  # a definition with only @type/@container: resolved through @vocab
        return iri if isinstance(iri, str) else None
    return None


def build_term_map(context: JsonLdContext, documents: Mapping[str, Any]) -> TermMap:
    """Process ``context`` (URLs resolved through ``documents``) plus the core context.

    Raises :class:`LdContextNotAvailable` when a URL has no document and
    :class:`BadRequestData` for malformed definitions.
    """
    user: list[tuple[str, Any]] = []
    vocabs: list[str] = []
    _definitions(context, documents, user, vocabs, 0)
    core: list[tuple[str, Any]] = []
    _definitions(core_context_document()["@context"], {}, core, [], 0)
    vocab = vocabs[-1] if vocabs else DEFAULT_VOCAB

    raw: dict[str, str] = {}
    for term, value in user:
        iri = _raw_iri(value)
        if iri is None:
            raw.pop(term, None)
            continue
        raw[term] = iri if iri else term
    user_terms = set(raw)
    for term, value in core:  # protected: core definitions win
        iri = _raw_iri(value)
        if iri:
            raw[term] = iri

    def resolve(term: str, iri: str, seen: frozenset[str] = frozenset()) -> str:
        if iri.startswith("@"):
            return iri
        colon = iri.find(":")
        if colon > 0:
            prefix = iri[:colon]
            if prefix in raw and prefix not in seen and not iri.startswith("//", colon + 1):
                base = resolve(prefix, raw[prefix], seen | {prefix})
                return base + iri[colon + 1 :]
            return iri
        if iri in raw and iri != term and iri not in seen:
            return resolve(iri, raw[iri], seen | {iri})
        return vocab + iri

    terms = {term: resolve(term, iri) for term, iri in raw.items()}
    reverse: dict[str, str] = {}
    # user terms first so that compaction prefers what the client defined
    for term in sorted(terms, key=lambda t: (t not in user_terms, len(t), t)):
        reverse.setdefault(terms[term], term)
    prefixes = tuple(
        sorted(
            (
                (term, iri)
                for term, iri in terms.items()
                if iri.endswith(("/", "#", ":")) and term in user_terms
            ),
            key=lambda p: -len(p[1]),
        )
    )
    urls = tuple(
        item
        for item in (context if isinstance(context, list | tuple) else [context])
        if isinstance(item, str)
    )
    return TermMap(
        terms=terms, vocab=vocab, urls=urls, source=context, reverse=reverse, prefixes=prefixes
    )


def context_cache_key(context: JsonLdContext) -> str:
    """A stable key for a context as given (URL list or inline objects)."""
    if context is None:
        return ""
    if isinstance(context, str):
        return context
    return json.dumps(context, sort_keys=True, separators=(",", ":"))


@cache
def core_term_map() -> TermMap:
    """The term map of the core context alone (requests without a user context)."""
    return build_term_map(None, {})


def context_value(terms: TermMap) -> Any:
    """The @context to repeat in an answer: the request's own, or the core context."""
    if terms.source is not None:
        return terms.source
    return CORE_CONTEXT_URL


@lru_cache(maxsize=256)
def _link_to(url: str) -> str:
    return f'<{url}>; rel="{CONTEXT_REL}"; type="{JSON_LD_MEDIA}"'


def context_link(terms: TermMap) -> str:
    """A Link header value pointing at the terms' context (or the core context)."""
    return _link_to(terms.urls[0] if len(terms.urls) == 1 else CORE_CONTEXT_URL)
