from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RouteKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROUTE_KIND_UNSPECIFIED: _ClassVar[RouteKind]
    HTTP_ROUTE: _ClassVar[RouteKind]
    GRPC_ROUTE: _ClassVar[RouteKind]
    VIRTUAL_SERVICE: _ClassVar[RouteKind]
    TCP_ROUTE: _ClassVar[RouteKind]

class PathMatchType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PATH_MATCH_TYPE_UNSPECIFIED: _ClassVar[PathMatchType]
    PATH_EXACT: _ClassVar[PathMatchType]
    PATH_PREFIX: _ClassVar[PathMatchType]
    PATH_REGULAR_EXPRESSION: _ClassVar[PathMatchType]
    PATH_STRING_PREFIX: _ClassVar[PathMatchType]

class ValueMatchType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VALUE_MATCH_TYPE_UNSPECIFIED: _ClassVar[ValueMatchType]
    VALUE_EXACT: _ClassVar[ValueMatchType]
    VALUE_REGULAR_EXPRESSION: _ClassVar[ValueMatchType]

class PathModifierType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PATH_MODIFIER_TYPE_UNSPECIFIED: _ClassVar[PathModifierType]
    REPLACE_FULL_PATH: _ClassVar[PathModifierType]
    REPLACE_PREFIX_MATCH: _ClassVar[PathModifierType]
    PREFIX_REWRITE: _ClassVar[PathModifierType]

class RedirectPort(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REDIRECT_PORT_UNSPECIFIED: _ClassVar[RedirectPort]
    REDIRECT_PORT_LISTENER: _ClassVar[RedirectPort]
    REDIRECT_PORT_SCHEME_DEFAULT: _ClassVar[RedirectPort]
    REDIRECT_PORT_REQUEST_HOST: _ClassVar[RedirectPort]
ROUTE_KIND_UNSPECIFIED: RouteKind
HTTP_ROUTE: RouteKind
GRPC_ROUTE: RouteKind
VIRTUAL_SERVICE: RouteKind
TCP_ROUTE: RouteKind
PATH_MATCH_TYPE_UNSPECIFIED: PathMatchType
PATH_EXACT: PathMatchType
PATH_PREFIX: PathMatchType
PATH_REGULAR_EXPRESSION: PathMatchType
PATH_STRING_PREFIX: PathMatchType
VALUE_MATCH_TYPE_UNSPECIFIED: ValueMatchType
VALUE_EXACT: ValueMatchType
VALUE_REGULAR_EXPRESSION: ValueMatchType
PATH_MODIFIER_TYPE_UNSPECIFIED: PathModifierType
REPLACE_FULL_PATH: PathModifierType
REPLACE_PREFIX_MATCH: PathModifierType
PREFIX_REWRITE: PathModifierType
REDIRECT_PORT_UNSPECIFIED: RedirectPort
REDIRECT_PORT_LISTENER: RedirectPort
REDIRECT_PORT_SCHEME_DEFAULT: RedirectPort
REDIRECT_PORT_REQUEST_HOST: RedirectPort

class PathMatch(_message.Message):
    __slots__ = ("type", "value")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    type: PathMatchType
    value: str
    def __init__(self, type: _Optional[_Union[PathMatchType, str]] = ..., value: _Optional[str] = ...) -> None: ...

class ValueMatch(_message.Message):
    __slots__ = ("name", "type", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: ValueMatchType
    value: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[ValueMatchType, str]] = ..., value: _Optional[str] = ...) -> None: ...

class RouteMatch(_message.Message):
    __slots__ = ("path", "method", "headers", "query")
    PATH_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    path: PathMatch
    method: str
    headers: _containers.RepeatedCompositeFieldContainer[ValueMatch]
    query: _containers.RepeatedCompositeFieldContainer[ValueMatch]
    def __init__(self, path: _Optional[_Union[PathMatch, _Mapping]] = ..., method: _Optional[str] = ..., headers: _Optional[_Iterable[_Union[ValueMatch, _Mapping]]] = ..., query: _Optional[_Iterable[_Union[ValueMatch, _Mapping]]] = ...) -> None: ...

class BackendRef(_message.Message):
    __slots__ = ("service_key", "port", "weight", "subset")
    SERVICE_KEY_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    SUBSET_FIELD_NUMBER: _ClassVar[int]
    service_key: str
    port: int
    weight: int
    subset: str
    def __init__(self, service_key: _Optional[str] = ..., port: _Optional[int] = ..., weight: _Optional[int] = ..., subset: _Optional[str] = ...) -> None: ...

class Header(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class HeaderModifier(_message.Message):
    __slots__ = ("set", "add", "remove")
    SET_FIELD_NUMBER: _ClassVar[int]
    ADD_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FIELD_NUMBER: _ClassVar[int]
    set: _containers.RepeatedCompositeFieldContainer[Header]
    add: _containers.RepeatedCompositeFieldContainer[Header]
    remove: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, set: _Optional[_Iterable[_Union[Header, _Mapping]]] = ..., add: _Optional[_Iterable[_Union[Header, _Mapping]]] = ..., remove: _Optional[_Iterable[str]] = ...) -> None: ...

class RetryPolicy(_message.Message):
    __slots__ = ("attempts", "codes", "backoff", "retry_on_connect_failure", "retry_on_refused_stream", "retriable_grpc_statuses")
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    CODES_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_FIELD_NUMBER: _ClassVar[int]
    RETRY_ON_CONNECT_FAILURE_FIELD_NUMBER: _ClassVar[int]
    RETRY_ON_REFUSED_STREAM_FIELD_NUMBER: _ClassVar[int]
    RETRIABLE_GRPC_STATUSES_FIELD_NUMBER: _ClassVar[int]
    attempts: int
    codes: _containers.RepeatedScalarFieldContainer[int]
    backoff: float
    retry_on_connect_failure: bool
    retry_on_refused_stream: bool
    retriable_grpc_statuses: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, attempts: _Optional[int] = ..., codes: _Optional[_Iterable[int]] = ..., backoff: _Optional[float] = ..., retry_on_connect_failure: _Optional[bool] = ..., retry_on_refused_stream: _Optional[bool] = ..., retriable_grpc_statuses: _Optional[_Iterable[int]] = ...) -> None: ...

class FaultPolicy(_message.Message):
    __slots__ = ("delay", "delay_percent", "abort_status", "abort_grpc_status", "abort_percent")
    DELAY_FIELD_NUMBER: _ClassVar[int]
    DELAY_PERCENT_FIELD_NUMBER: _ClassVar[int]
    ABORT_STATUS_FIELD_NUMBER: _ClassVar[int]
    ABORT_GRPC_STATUS_FIELD_NUMBER: _ClassVar[int]
    ABORT_PERCENT_FIELD_NUMBER: _ClassVar[int]
    delay: float
    delay_percent: float
    abort_status: int
    abort_grpc_status: int
    abort_percent: float
    def __init__(self, delay: _Optional[float] = ..., delay_percent: _Optional[float] = ..., abort_status: _Optional[int] = ..., abort_grpc_status: _Optional[int] = ..., abort_percent: _Optional[float] = ...) -> None: ...

class PathModifier(_message.Message):
    __slots__ = ("type", "value")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    type: PathModifierType
    value: str
    def __init__(self, type: _Optional[_Union[PathModifierType, str]] = ..., value: _Optional[str] = ...) -> None: ...

class RedirectFilter(_message.Message):
    __slots__ = ("status", "scheme", "hostname", "port", "derive_port", "path")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    DERIVE_PORT_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    status: int
    scheme: str
    hostname: str
    port: int
    derive_port: RedirectPort
    path: PathModifier
    def __init__(self, status: _Optional[int] = ..., scheme: _Optional[str] = ..., hostname: _Optional[str] = ..., port: _Optional[int] = ..., derive_port: _Optional[_Union[RedirectPort, str]] = ..., path: _Optional[_Union[PathModifier, _Mapping]] = ...) -> None: ...

class RewriteFilter(_message.Message):
    __slots__ = ("hostname", "path")
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    hostname: str
    path: PathModifier
    def __init__(self, hostname: _Optional[str] = ..., path: _Optional[_Union[PathModifier, _Mapping]] = ...) -> None: ...

class MirrorFilter(_message.Message):
    __slots__ = ("backend", "percent")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    backend: BackendRef
    percent: float
    def __init__(self, backend: _Optional[_Union[BackendRef, _Mapping]] = ..., percent: _Optional[float] = ...) -> None: ...

class RouteRule(_message.Message):
    __slots__ = ("index", "matches", "backends", "request_headers", "response_headers", "request_timeout", "backend_timeout", "retry", "invalid_weight", "fault", "redirect", "rewrite", "mirrors")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    BACKENDS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_HEADERS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_HEADERS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    BACKEND_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    INVALID_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    FAULT_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_FIELD_NUMBER: _ClassVar[int]
    REWRITE_FIELD_NUMBER: _ClassVar[int]
    MIRRORS_FIELD_NUMBER: _ClassVar[int]
    index: int
    matches: _containers.RepeatedCompositeFieldContainer[RouteMatch]
    backends: _containers.RepeatedCompositeFieldContainer[BackendRef]
    request_headers: HeaderModifier
    response_headers: HeaderModifier
    request_timeout: float
    backend_timeout: float
    retry: RetryPolicy
    invalid_weight: int
    fault: FaultPolicy
    redirect: RedirectFilter
    rewrite: RewriteFilter
    mirrors: _containers.RepeatedCompositeFieldContainer[MirrorFilter]
    def __init__(self, index: _Optional[int] = ..., matches: _Optional[_Iterable[_Union[RouteMatch, _Mapping]]] = ..., backends: _Optional[_Iterable[_Union[BackendRef, _Mapping]]] = ..., request_headers: _Optional[_Union[HeaderModifier, _Mapping]] = ..., response_headers: _Optional[_Union[HeaderModifier, _Mapping]] = ..., request_timeout: _Optional[float] = ..., backend_timeout: _Optional[float] = ..., retry: _Optional[_Union[RetryPolicy, _Mapping]] = ..., invalid_weight: _Optional[int] = ..., fault: _Optional[_Union[FaultPolicy, _Mapping]] = ..., redirect: _Optional[_Union[RedirectFilter, _Mapping]] = ..., rewrite: _Optional[_Union[RewriteFilter, _Mapping]] = ..., mirrors: _Optional[_Iterable[_Union[MirrorFilter, _Mapping]]] = ...) -> None: ...

class HttpRoute(_message.Message):
    __slots__ = ("kind", "name", "namespace", "created", "service_key", "port", "rules")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    SERVICE_KEY_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    kind: RouteKind
    name: str
    namespace: str
    created: str
    service_key: str
    port: int
    rules: _containers.RepeatedCompositeFieldContainer[RouteRule]
    def __init__(self, kind: _Optional[_Union[RouteKind, str]] = ..., name: _Optional[str] = ..., namespace: _Optional[str] = ..., created: _Optional[str] = ..., service_key: _Optional[str] = ..., port: _Optional[int] = ..., rules: _Optional[_Iterable[_Union[RouteRule, _Mapping]]] = ...) -> None: ...
