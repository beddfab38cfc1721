from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TargetKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TARGET_KIND_UNSPECIFIED: _ClassVar[TargetKind]
    GATEWAY: _ClassVar[TargetKind]
    SERVICE: _ClassVar[TargetKind]
TARGET_KIND_UNSPECIFIED: TargetKind
GATEWAY: TargetKind
SERVICE: TargetKind

class PolicyTarget(_message.Message):
    __slots__ = ("kind", "namespace", "name")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    kind: TargetKind
    namespace: str
    name: str
    def __init__(self, kind: _Optional[_Union[TargetKind, str]] = ..., namespace: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class RateLimit(_message.Message):
    __slots__ = ("requests_per_second", "burst")
    REQUESTS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    BURST_FIELD_NUMBER: _ClassVar[int]
    requests_per_second: int
    burst: int
    def __init__(self, requests_per_second: _Optional[int] = ..., burst: _Optional[int] = ...) -> None: ...

class ClientOverride(_message.Message):
    __slots__ = ("limit", "principals")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PRINCIPALS_FIELD_NUMBER: _ClassVar[int]
    limit: RateLimit
    principals: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, limit: _Optional[_Union[RateLimit, _Mapping]] = ..., principals: _Optional[_Iterable[str]] = ...) -> None: ...

class RateLimitPolicy(_message.Message):
    __slots__ = ("name", "namespace", "targets", "total", "identity", "overrides")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    name: str
    namespace: str
    targets: _containers.RepeatedCompositeFieldContainer[PolicyTarget]
    total: RateLimit
    identity: RateLimit
    overrides: _containers.RepeatedCompositeFieldContainer[ClientOverride]
    def __init__(self, name: _Optional[str] = ..., namespace: _Optional[str] = ..., targets: _Optional[_Iterable[_Union[PolicyTarget, _Mapping]]] = ..., total: _Optional[_Union[RateLimit, _Mapping]] = ..., identity: _Optional[_Union[RateLimit, _Mapping]] = ..., overrides: _Optional[_Iterable[_Union[ClientOverride, _Mapping]]] = ...) -> None: ...
