"""NGSI-LD error types (ETSI GS CIM 009, clause 5.5.2) as one exception hierarchy.

Domain and broker code raise these; the HTTP layer renders every one of them as
ProblemDetails (RFC 7807) with the ``type``, ``title``, ``status`` and ``detail`` members.
"""

from __future__ import annotations

from typing import Any

ERROR_TYPE_BASE = "https://uri.etsi.org/ngsi-ld/errors/"


class NgsiLdError(Exception):
    """Base of every NGSI-LD error: carries the problem type, HTTP status and title."""

    error_type: str = "InternalError"
    status: int = 500
    title: str = "Internal error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    @property
    def type_uri(self) -> str:
        return ERROR_TYPE_BASE + self.error_type

    def to_problem(self) -> dict[str, Any]:
        """The ProblemDetails document for this error."""
        body: dict[str, Any] = {
            "type": self.type_uri,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        body.update(self.extra)
        return body


class InvalidRequest(NgsiLdError):
    error_type = "InvalidRequest"
    status = 400
    title = "The request is not well formed"


class BadRequestData(NgsiLdError):
    error_type = "BadRequestData"
    status = 400
    title = "The request includes input data which does not meet the requirements"


class AlreadyExists(NgsiLdError):
    error_type = "AlreadyExists"
    status = 409
    title = "The referred element already exists"


class OperationNotSupported(NgsiLdError):
    error_type = "OperationNotSupported"
    status = 422
    title = "The operation is not supported"


class ResourceNotFound(NgsiLdError):
    error_type = "ResourceNotFound"
    status = 404
    title = "The referred resource has not been found"


class NonexistentTenant(NgsiLdError):
    error_type = "NonexistentTenant"
    status = 404
    title = "The addressed tenant does not exist"


class NoMultiTenantSupport(NgsiLdError):
    error_type = "NoMultiTenantSupport"
    status = 501
    title = "The implementation does not support multiple tenants"


class InternalError(NgsiLdError):
    error_type = "InternalError"
    status = 500
    title = "There has been an error during the operation execution"


class TooComplexQuery(NgsiLdError):
    error_type = "TooComplexQuery"
    status = 403
    title = "The query is too complex"


class TooManyResults(NgsiLdError):
    error_type = "TooManyResults"
    status = 403
    title = "The query leads to too many results"


class LdContextNotAvailable(NgsiLdError):
    error_type = "LdContextNotAvailable"
    status = 503
    title = "A remote JSON-LD @context could not be retrieved"


class UnsupportedMediaType(NgsiLdError):
    error_type = "UnsupportedMediaType"
    status = 415
    title = "The request payload is in an unsupported format"


class NotAcceptable(NgsiLdError):
    error_type = "NotAcceptable"
    status = 406
    title = "None of the requested media types can be produced"


class PayloadTooLarge(NgsiLdError):
    error_type = "BadRequestData"
    status = 413
    title = "The request payload is larger than the configured limit"


class MethodNotAllowed(NgsiLdError):
    error_type = "OperationNotSupported"
    status = 405
    title = "The HTTP method is not allowed on this resource"
