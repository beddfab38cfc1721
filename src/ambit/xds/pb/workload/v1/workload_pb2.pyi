from google.protobuf import wrappers_pb2 as _wrappers_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TunnelProtocol(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NONE: _ClassVar[TunnelProtocol]
    HBONE: _ClassVar[TunnelProtocol]

class WorkloadStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HEALTHY: _ClassVar[WorkloadStatus]
    UNHEALTHY: _ClassVar[WorkloadStatus]
NONE: TunnelProtocol
HBONE: TunnelProtocol
HEALTHY: WorkloadStatus
UNHEALTHY: WorkloadStatus

class Address(_message.Message):
    __slots__ = ("workload", "service")
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    workload: Workload
    service: Service
    def __init__(self, workload: _Optional[_Union[Workload, _Mapping]] = ..., service: _Optional[_Union[Service, _Mapping]] = ...) -> None: ...

class Locality(_message.Message):
    __slots__ = ("region", "zone", "subzone")
    REGION_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    SUBZONE_FIELD_NUMBER: _ClassVar[int]
    region: str
    zone: str
    subzone: str
    def __init__(self, region: _Optional[str] = ..., zone: _Optional[str] = ..., subzone: _Optional[str] = ...) -> None: ...

class NamespacedHostname(_message.Message):
    __slots__ = ("namespace", "hostname")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    hostname: str
    def __init__(self, namespace: _Optional[str] = ..., hostname: _Optional[str] = ...) -> None: ...

class GatewayAddress(_message.Message):
    __slots__ = ("hostname", "hbone_mtls_port")
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    HBONE_MTLS_PORT_FIELD_NUMBER: _ClassVar[int]
    hostname: NamespacedHostname
    hbone_mtls_port: int
    def __init__(self, hostname: _Optional[_Union[NamespacedHostname, _Mapping]] = ..., hbone_mtls_port: _Optional[int] = ...) -> None: ...

class Port(_message.Message):
    __slots__ = ("service_port", "target_port")
    SERVICE_PORT_FIELD_NUMBER: _ClassVar[int]
    TARGET_PORT_FIELD_NUMBER: _ClassVar[int]
    service_port: int
    target_port: int
    def __init__(self, service_port: _Optional[int] = ..., target_port: _Optional[int] = ...) -> None: ...

class PortList(_message.Message):
    __slots__ = ("ports",)
    PORTS_FIELD_NUMBER: _ClassVar[int]
    ports: _containers.RepeatedCompositeFieldContainer[Port]
    def __init__(self, ports: _Optional[_Iterable[_Union[Port, _Mapping]]] = ...) -> None: ...

class WorkloadService(_message.Message):
    __slots__ = ("service_key", "ports")
    SERVICE_KEY_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    service_key: str
    ports: PortList
    def __init__(self, service_key: _Optional[str] = ..., ports: _Optional[_Union[PortList, _Mapping]] = ...) -> None: ...

class Workload(_message.Message):
    __slots__ = ("uid", "name", "namespace", "addresses", "tunnel_protocol", "trust_domain", "service_account", "waypoint", "node", "canonical_name", "canonical_revision", "workload_name", "authorization_policies", "status", "services", "locality", "capacity")
    UID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    TUNNEL_PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    TRUST_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    WAYPOINT_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    CANONICAL_NAME_FIELD_NUMBER: _ClassVar[int]
    CANONICAL_REVISION_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_NAME_FIELD_NUMBER: _ClassVar[int]
    AUTHORIZATION_POLICIES_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    LOCALITY_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    uid: str
    name: str
    namespace: str
    addresses: _containers.RepeatedScalarFieldContainer[bytes]
    tunnel_protocol: TunnelProtocol
    trust_domain: str
    service_account: str
    waypoint: GatewayAddress
    node: str
    canonical_name: str
    canonical_revision: str
    workload_name: str
    authorization_policies: _containers.RepeatedScalarFieldContainer[str]
    status: WorkloadStatus
    services: _containers.RepeatedCompositeFieldContainer[WorkloadService]
    locality: Locality
    capacity: _wrappers_pb2.UInt32Value
    def __init__(self, uid: _Optional[str] = ..., name: _Optional[str] = ..., namespace: _Optional[str] = ..., addresses: _Optional[_Iterable[bytes]] = ..., tunnel_protocol: _Optional[_Union[TunnelProtocol, str]] = ..., trust_domain: _Optional[str] = ..., service_account: _Optional[str] = ..., waypoint: _Optional[_Union[GatewayAddress, _Mapping]] = ..., node: _Optional[str] = ..., canonical_name: _Optional[str] = ..., canonical_revision: _Optional[str] = ..., workload_name: _Optional[str] = ..., authorization_policies: _Optional[_Iterable[str]] = ..., status: _Optional[_Union[WorkloadStatus, str]] = ..., services: _Optional[_Iterable[_Union[WorkloadService, _Mapping]]] = ..., locality: _Optional[_Union[Locality, _Mapping]] = ..., capacity: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ...) -> None: ...

class ServicePort(_message.Message):
    __slots__ = ("service_port", "target_port", "app_protocol", "name", "target_port_name")
    SERVICE_PORT_FIELD_NUMBER: _ClassVar[int]
    TARGET_PORT_FIELD_NUMBER: _ClassVar[int]
    APP_PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TARGET_PORT_NAME_FIELD_NUMBER: _ClassVar[int]
    service_port: int
    target_port: int
    app_protocol: str
    name: str
    target_port_name: str
    def __init__(self, service_port: _Optional[int] = ..., target_port: _Optional[int] = ..., app_protocol: _Optional[str] = ..., name: _Optional[str] = ..., target_port_name: _Optional[str] = ...) -> None: ...

class Service(_message.Message):
    __slots__ = ("name", "namespace", "hostname", "vips", "ports", "waypoint")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    VIPS_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    WAYPOINT_FIELD_NUMBER: _ClassVar[int]
    name: str
    namespace: str
    hostname: str
    vips: _containers.RepeatedScalarFieldContainer[bytes]
    ports: _containers.RepeatedCompositeFieldContainer[ServicePort]
    waypoint: GatewayAddress
    def __init__(self, name: _Optional[str] = ..., namespace: _Optional[str] = ..., hostname: _Optional[str] = ..., vips: _Optional[_Iterable[bytes]] = ..., ports: _Optional[_Iterable[_Union[ServicePort, _Mapping]]] = ..., waypoint: _Optional[_Union[GatewayAddress, _Mapping]] = ...) -> None: ...
