from ambit.xds.pb.security.v1 import authorization_pb2 as _authorization_pb2
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

class L7Authorization(_message.Message):
    __slots__ = ("name", "namespace", "action", "targets", "rules", "dry_run")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    name: str
    namespace: str
    action: _authorization_pb2.Action
    targets: _containers.RepeatedCompositeFieldContainer[PolicyTarget]
    rules: _containers.RepeatedCompositeFieldContainer[L7Rule]
    dry_run: bool
    def __init__(self, name: _Optional[str] = ..., namespace: _Optional[str] = ..., action: _Optional[_Union[_authorization_pb2.Action, str]] = ..., targets: _Optional[_Iterable[_Union[PolicyTarget, _Mapping]]] = ..., rules: _Optional[_Iterable[_Union[L7Rule, _Mapping]]] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class L7Rule(_message.Message):
    __slots__ = ("clauses",)
    CLAUSES_FIELD_NUMBER: _ClassVar[int]
    clauses: _containers.RepeatedCompositeFieldContainer[L7Clause]
    def __init__(self, clauses: _Optional[_Iterable[_Union[L7Clause, _Mapping]]] = ...) -> None: ...

class L7Clause(_message.Message):
    __slots__ = ("matches",)
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    matches: _containers.RepeatedCompositeFieldContainer[L7Match]
    def __init__(self, matches: _Optional[_Iterable[_Union[L7Match, _Mapping]]] = ...) -> None: ...

class HeaderMatch(_message.Message):
    __slots__ = ("name", "values")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    name: str
    values: _containers.RepeatedCompositeFieldContainer[_authorization_pb2.StringMatch]
    def __init__(self, name: _Optional[str] = ..., values: _Optional[_Iterable[_Union[_authorization_pb2.StringMatch, _Mapping]]] = ...) -> None: ...

class L7Match(_message.Message):
    __slots__ = ("principals", "not_principals", "namespaces", "not_namespaces", "source_ips", "not_source_ips", "hosts", "not_hosts", "methods", "not_methods", "paths", "not_paths", "destination_ports", "not_destination_ports", "headers", "not_headers")
    PRINCIPALS_FIELD_NUMBER: _ClassVar[int]
    NOT_PRINCIPALS_FIELD_NUMBER: _ClassVar[int]
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    NOT_NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_IPS_FIELD_NUMBER: _ClassVar[int]
    NOT_SOURCE_IPS_FIELD_NUMBER: _ClassVar[int]
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    NOT_HOSTS_FIELD_NUMBER: _ClassVar[int]
    METHODS_FIELD_NUMBER: _ClassVar[int]
    NOT_METHODS_FIELD_NUMBER: _ClassVar[int]
    PATHS_FIELD_NUMBER: _ClassVar[int]
    NOT_PATHS_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_PORTS_FIELD_NUMBER: _ClassVar[int]
    NOT_DESTINATION_PORTS_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    NOT_HEADERS_FIELD_NUMBER: _ClassVar[int]
    principals: _containers.RepeatedCompositeFieldContainer[_authorization_pb2.StringMatch]
    not_principals: _containers.RepeatedCompositeFieldContainer[_authorization_pb2.StringMatch]
    namespaces: _containers.RepeatedCompositeFieldContainer[_authorization_pb2.StringMatch]
    not_namespaces: _containers.RepeatedCompositeFieldContainer[_authorization_pb2.StringMatch]
    source_ips: _containers.RepeatedCompositeFieldContainer[_authorization_pb2.Address]
    not_source_ips: _containers.RepeatedCompositeFieldContainer[_authorization_pb2.Address]
    hosts: _containers.RepeatedCompositeFieldContainer[_authorization_pb2.StringMatch]
    not_hosts: _containers.RepeatedCompositeFieldContainer[_authorization_pb2.StringMatch]
    methods: _containers.RepeatedCompositeFieldContainer[_authorization_pb2.StringMatch]
    not_methods: _containers.RepeatedCompositeFieldContainer[_authorization_pb2.StringMatch]
    paths: _containers.RepeatedCompositeFieldContainer[_authorization_pb2.StringMatch]
    not_paths: _containers.RepeatedCompositeFieldContainer[_authorization_pb2.StringMatch]
    destination_ports: _containers.RepeatedScalarFieldContainer[int]
    not_destination_ports: _containers.RepeatedScalarFieldContainer[int]
    headers: _containers.RepeatedCompositeFieldContainer[HeaderMatch]
    not_headers: _containers.RepeatedCompositeFieldContainer[HeaderMatch]
    def __init__(self, principals: _Optional[_Iterable[_Union[_authorization_pb2.StringMatch, _Mapping]]] = ..., not_principals: _Optional[_Iterable[_Union[_authorization_pb2.StringMatch, _Mapping]]] = ..., namespaces: _Optional[_Iterable[_Union[_authorization_pb2.StringMatch, _Mapping]]] = ..., not_namespaces: _Optional[_Iterable[_Union[_authorization_pb2.StringMatch, _Mapping]]] = ..., source_ips: _Optional[_Iterable[_Union[_authorization_pb2.Address, _Mapping]]] = ..., not_source_ips: _Optional[_Iterable[_Union[_authorization_pb2.Address, _Mapping]]] = ..., hosts: _Optional[_Iterable[_Union[_authorization_pb2.StringMatch, _Mapping]]] = ..., not_hosts: _Optional[_Iterable[_Union[_authorization_pb2.StringMatch, _Mapping]]] = ..., methods: _Optional[_Iterable[_Union[_authorization_pb2.StringMatch, _Mapping]]] = ..., not_methods: _Optional[_Iterable[_Union[_authorization_pb2.StringMatch, _Mapping]]] = ..., paths: _Optional[_Iterable[_Union[_authorization_pb2.StringMatch, _Mapping]]] = ..., not_paths: _Optional[_Iterable[_Union[_authorization_pb2.StringMatch, _Mapping]]] = ..., destination_ports: _Optional[_Iterable[int]] = ..., not_destination_ports: _Optional[_Iterable[int]] = ..., headers: _Optional[_Iterable[_Union[HeaderMatch, _Mapping]]] = ..., not_headers: _Optional[_Iterable[_Union[HeaderMatch, _Mapping]]] = ...) -> None: ...
