"""The JSON API under /api/: error shape, request parsing, shared view plumbing and routes.

Errors follow docs/architecture.md ("Interfaces"): 400 ``{"errors": {field: [message]}}`` for bad input, 403/404 for
authorization, 409 for a state that does not allow the action. Never a 500 for bad input.
Other statuses use the same shape: 401 (no or bad credentials; ``WWW-Authenticate: Token`` is
sent, because token authentication is tried first), 405, 406, 413 (a body over
``DATA_UPLOAD_MAX_MEMORY_SIZE``) and 415 (a body that is not JSON).

The endpoints live next to their domain (``authority.api``, ``enrollment.api``, ``bundles.api``;
the site's ``ca_portal/urls.py`` mounts them). Their views are thin: a serializer checks the shape
of the input, one service or selector does the work, and the refusals of the services
(``core.errors.ServiceError`` and the pure core's ``PkiError``) are turned into the error shape here.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, RequestDataTooBig
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import Direction, OpenApiResponse
from rest_framework import exceptions, permissions, serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.metadata import BaseMetadata
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import BasePagination, LimitOffsetPagination
from rest_framework.parsers import JSONParser
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView, set_rollback
from rest_framework.views import exception_handler as drf_exception_handler

from core.errors import ServiceError
from core.roles import is_auditor, is_ca_admin
from pki.errors import PkiError

ALL = "__all__"


# --- errors ----------------------------------------------------------------------------------


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "the request body is too large"
    default_code = "payload_too_large"


class Refused(exceptions.APIException):
    """A refusal with an explicit status and field, e.g. 403 on ``kind`` for a roaming user's gateway."""

    def __init__(self, message: str, *, field: str = ALL, status_code: int = status.HTTP_400_BAD_REQUEST) -> None:
        super().__init__({field: [message]})
        self.status_code = status_code


def _messages(value: Any, prefix: str = "") -> list[str]:
    """Flatten DRF's nested error details (lists of items, dicts of items) into plain messages."""
    if isinstance(value, Mapping):
        return [m for key, item in value.items() for m in _messages(item, f"{prefix}item {key}: ")]
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [m for item in value for m in _messages(item, prefix)]
    return [f"{prefix}{value}"]


def error_body(detail: Any) -> dict[str, dict[str, list[str]]]:
    if isinstance(detail, Mapping):
        errors: dict[str, list[str]] = {}
        for field, messages in detail.items():
            key = ALL if field == api_settings.NON_FIELD_ERRORS_KEY else str(field)
            errors.setdefault(key, []).extend(_messages(messages))
        return {"errors": errors}
    return {"errors": {ALL: _messages(detail)}}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    # The services' refusals: the field at fault and the status they chose. Nothing is kept, as for
    # DRF's own exceptions (this matters only under ATOMIC_REQUESTS).
    if isinstance(exc, ServiceError | PkiError | RequestDataTooBig):
        set_rollback()
    if isinstance(exc, ServiceError):
        return Response(error_body({exc.field: [str(exc)]}), status=exc.status)
    if isinstance(exc, PkiError):
        return Response(error_body(str(exc)), status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, RequestDataTooBig):
        return Response(error_body(PayloadTooLarge.default_detail), status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, ObjectDoesNotExist):  # e.g. a row deleted between the lookup and the service call
        exc = exceptions.NotFound()

    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.APIException):
        response.data = error_body(exc.detail)
    else:
        response.data = error_body(response.data.get("detail", "") if isinstance(response.data, dict) else "")
    if response.status_code == status.HTTP_401_UNAUTHORIZED and "WWW-Authenticate" not in response:
        response.status_code = status.HTTP_403_FORBIDDEN
    return response


class ErrorSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """The error shape of every API response that is not a success."""

    errors = serializers.DictField(  # type: ignore[assignment]  # a field, though Serializer.errors exists
        child=serializers.ListField(child=serializers.CharField()),
        help_text='messages by input field; "__all__" for the request as a whole',
    )


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    descriptions = {
        400: "bad input",
        401: "no or bad credentials (WWW-Authenticate: Token)",
        403: "not allowed for this user, or a session request without a CSRF token",
        404: "no such object, or not one this user may see",
        409: "the object's state does not allow this action",
        413: "the request body is larger than 64 KiB",
        415: "the request body is not JSON",
    }
    return {code: OpenApiResponse(ErrorSerializer, description=descriptions[code]) for code in codes}


# --- input -----------------------------------------------------------------------------------


class JsonBodyParser(JSONParser):
    """DRF's JSON parser, with Django's body size limit, which DRF's parsers do not apply (T30)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None:
            request = (parser_context or {}).get("request")
            meta = getattr(request, "META", {})
            try:
                declared = int(meta.get("CONTENT_LENGTH") or 0)
            except ValueError:
                declared = 0
            if declared > limit:
                raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
            body = stream.read(limit + 1)
            if len(body) > limit:
                raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
            stream = io.BytesIO(body)
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:  # e.g. 30,000 nested "[": not a ValueError, so DRF would let it through as a 500
            raise exceptions.ParseError("JSON parse error - nested too deeply") from None


class StrictCharField(serializers.CharField):
    """A string, and only a string: DRF's CharField would turn 42 or 4.2 into "42" and "4.2".

    ``max_length`` holds for the string as sent, as the schema says; DRF checks it only after
    trimming, so " " followed by 500 characters passed a limit of 500.
    """

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        if self.max_length is not None and len(data) > self.max_length:
            self.fail("max_length", max_length=self.max_length)
        return str(super().to_internal_value(data))


class StrictSerializer(serializers.Serializer):  # type: ignore[type-arg]
    # Refuses fields it does not declare, so nobody can slip in validity_days, is_ca or owner (T10).
    # (A comment, not a docstring: drf-spectacular would show a docstring as every subclass's description.)

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = sorted(str(key) for key in data if key not in self.fields or self.fields[key].read_only)
            if unknown:
                raise serializers.ValidationError({key: ["this field is not accepted here"] for key in unknown})
        return super().to_internal_value(data)


class StrictSerializerSchema(OpenApiSerializerExtension):  # type: ignore[no-untyped-call]
    """Tell schema readers (and schemathesis) that undeclared fields are refused."""

    target_class = StrictSerializer
    match_subclasses = True

    def map_serializer(self, auto_schema: AutoSchema, direction: Direction) -> dict[str, Any]:
        schema: dict[str, Any] = auto_schema._map_serializer(  # type: ignore[no-untyped-call]
            self.target, direction, bypass_extensions=True
        )
        schema["additionalProperties"] = False
        return schema


# --- view plumbing ---------------------------------------------------------------------------


class FormatNegotiation(DefaultContentNegotiation):
    """``?format=`` picks a renderer only where one has that name; elsewhere it is an ordinary query
    parameter (the certificate list reads ``format=csv`` itself), instead of DRF's 404."""

    def filter_renderers(self, renderers: Iterable[BaseRenderer], format: str) -> list[BaseRenderer]:
        renderers = list(renderers)
        return [r for r in renderers if r.format == format] or renderers


class Pagination(LimitOffsetPagination):
    """?limit= (1 to 1000, default 100) and ?offset= (from 0); anything else is a 400, not a silent default.

    The cap also keeps a huge limit from reaching the database as an out-of-range LIMIT.
    """

    max_limit = 1000

    def _parameter(self, request: Request, name: str, minimum: int, maximum: int | None) -> int | None:
        raw = request.query_params.get(name)
        if raw is None:
            return None
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 18) or int(raw) < minimum:
            raise serializers.ValidationError({name: [f"must be a whole number from {minimum}"]})
        if maximum is not None and int(raw) > maximum:
            raise serializers.ValidationError({name: [f"must be at most {maximum}"]})
        return int(raw)

    def get_limit(self, request: Request) -> int | None:
        limit = self._parameter(request, self.limit_query_param, 1, self.max_limit)
        return self.default_limit if limit is None else limit

    def get_offset(self, request: Request) -> int:
        return self._parameter(request, self.offset_query_param, 0, None) or 0

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters: list[dict[str, Any]] = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.limit_query_param:
                parameter["schema"].update(minimum=1, maximum=self.max_limit, default=self.default_limit)
            elif parameter["name"] == self.offset_query_param:
                parameter["schema"].update(minimum=0, default=0)
        return parameters


class PlainMetadata(BaseMetadata):
    """``OPTIONS``: the view's name and the methods it allows (also in the ``Allow`` header).

    DRF's default metadata describes the input by building the view's serializer, which our views
    choose per method and do not declare on the class, so it failed with a 500 (review F7)."""

    def determine_metadata(self, request: Request, view: APIView) -> dict[str, Any]:
        return {"name": view.get_view_name(), "allowed_methods": list(view.allowed_methods)}


class ApiView(GenericAPIView):  # type: ignore[type-arg]
    parser_classes = [JsonBodyParser]
    metadata_class = PlainMetadata
    content_negotiation_class = FormatNegotiation
    pagination_class: type[BasePagination] | None = None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # authentication and permissions first: 401/403 before 400
        repeated = sorted(name for name, values in request.query_params.lists() if len(values) > 1)
        if repeated:
            raise serializers.ValidationError({key: ["give this query parameter once"] for key in repeated})
        if isinstance(self.paginator, Pagination):  # bad paging is a 400 even where a response is not paged (CSV)
            self.paginator.get_limit(request)
            self.paginator.get_offset(request)


class ApiListView(ApiView):
    pagination_class = Pagination


def query(serializer_class: type[serializers.Serializer[Any]], request: Request) -> dict[str, Any]:
    """Validate query parameters with a serializer; 400 in the error shape when they are bad."""
    serializer = serializer_class(data=request.query_params.dict())
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def body(serializer_class: type[serializers.Serializer[Any]], request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def object_id(value: str) -> int:
    """A path id: plain decimal digits that fit the database, else 404 (never a 500 or an HTML page)."""
    if not (value.isascii() and value.isdigit() and 0 < len(value) <= 18):
        raise exceptions.NotFound()
    return int(value)


def require_ca_admin(request: Request, message: str = "only CA admins may do this") -> None:
    if not is_ca_admin(request.user):
        raise exceptions.PermissionDenied(message)


class IsCaAdminOrAuditor(permissions.BasePermission):
    message = "only CA admins and auditors may see this"

    def has_permission(self, request: Request, view: APIView) -> bool:
        return is_ca_admin(request.user) or is_auditor(request.user)
