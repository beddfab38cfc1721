"""Value rules shared by the schemas: Kubernetes names, label syntax, ports, IPs, Gateway API patterns.

Each ``check_*`` returns an error message, or ``None`` when the value is valid. The messages follow
Kubernetes' wording closely enough that an operator recognises them. Pure: stdlib only.
"""

from __future__ import annotations

import ipaddress
import re

from ambit.resources import quantity

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
IANA_SVC_NAME_MAX = 15
LABEL_VALUE_MAX = 63
MAX_PORT = 65535

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_IANA_SVC_NAME = re.compile(r"[-a-z0-9]+")
_HAS_LETTER = re.compile(r"[a-z]")
_GW_HOSTNAME = re.compile(r"(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_GW_PROTOCOL = re.compile(
    r"[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/[A-Za-z0-9]+"
)
_GW_DURATION = re.compile(r"([0-9]{1,5}(h|m|s|ms)){1,4}")
_PERCENT = re.compile(r"[0-9]+%")
_DIGITS = re.compile(r"[0-9]+")


def check_dns1123_label(value: str) -> str | None:
    if len(value) > DNS1123_LABEL_MAX:
        return f"must be no more than {DNS1123_LABEL_MAX} characters"
    if not _DNS1123_LABEL.fullmatch(value):
        return (
            f"{value!r} is not a valid DNS-1123 label: lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return None


def check_dns1035_label(value: str) -> str | None:
    if len(value) > DNS1123_LABEL_MAX:
        return f"must be no more than {DNS1123_LABEL_MAX} characters"
    if not _DNS1035_LABEL.fullmatch(value):
        return (
            f"{value!r} is not a valid DNS-1035 label: lowercase letters, digits and '-', "
            "starting with a letter and ending with a letter or digit"
        )
    return None


def check_dns1123_subdomain(value: str) -> str | None:
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        return f"must be no more than {DNS1123_SUBDOMAIN_MAX} characters"
    if not _DNS1123_SUBDOMAIN.fullmatch(value):
        return (
            f"{value!r} is not a valid DNS-1123 subdomain: lowercase letters, digits, '-' and '.', "
            "starting and ending with a letter or digit"
        )
    return None


def check_qualified_name(value: str) -> str | None:
    """A label or annotation key: ``[prefix/]name`` (prefix a DNS subdomain, name ≤ 63 characters)."""
    prefix, slash, name = value.rpartition("/")
    if slash:
        if not prefix:
            return f"{value!r}: prefix part must be non-empty"
        problem = check_dns1123_subdomain(prefix)
        if problem is not None:
            return f"{value!r}: prefix part {problem}"
    if not name:
        return f"{value!r}: name part must be non-empty"
    if len(name) > LABEL_VALUE_MAX:
        return f"{value!r}: name part must be no more than {LABEL_VALUE_MAX} characters"
    if not _QUALIFIED_NAME.fullmatch(name):
        return (
            f"{value!r}: name part must consist of alphanumeric characters, '-', '_' or '.', "
            "and must start and end with an alphanumeric character"
        )
    return None


def check_label_value(value: str) -> str | None:
    if len(value) > LABEL_VALUE_MAX:
        return f"label value must be no more than {LABEL_VALUE_MAX} characters"
    if value and not _QUALIFIED_NAME.fullmatch(value):
        return (
            f"{value!r} is not a valid label value: alphanumeric characters, '-', '_' or '.', "
            "starting and ending with an alphanumeric character"
        )
    return None


def check_iana_svc_name(value: str) -> str | None:
    """A named port (IANA_SVC_NAME): ≤ 15 characters, lowercase letters, digits and '-', with a letter."""
    if len(value) > IANA_SVC_NAME_MAX:
        return f"{value!r}: a port name must be no more than {IANA_SVC_NAME_MAX} characters"
    if not _IANA_SVC_NAME.fullmatch(value):
        return f"{value!r}: a port name must contain only lowercase letters, digits and '-'"
    if value.startswith("-") or value.endswith("-"):
        return f"{value!r}: a port name must not begin or end with '-'"
    if "--" in value:
        return f"{value!r}: a port name must not contain consecutive '-'"
    if not _HAS_LETTER.search(value):
        return f"{value!r}: a port name must contain at least one letter"
    return None


def check_port(value: int) -> str | None:
    if not 1 <= value <= MAX_PORT:
        return f"must be between 1 and {MAX_PORT}, inclusive, got {value}"
    return None


def check_port_or_name(value: object) -> str | None:
    """An IntOrString port (targetPort, probe port): a number 1-65535 or an IANA_SVC_NAME."""
    if isinstance(value, bool):
        return f"expected a port number or name, got {str(value).lower()}"
    if isinstance(value, int):
        return check_port(value)
    if isinstance(value, str):
        return check_iana_svc_name(value)
    return f"expected a port number or name, got {describe(value)}"


def check_int_or_percent(value: object) -> str | None:
    """A PodDisruptionBudget count: a non-negative integer or a percentage string like '50%'."""
    if isinstance(value, bool):
        return f"expected an integer or a percentage, got {str(value).lower()}"
    if isinstance(value, int):
        return None if value >= 0 else f"must be greater than or equal to 0, got {value}"
    if isinstance(value, str):
        if not _PERCENT.fullmatch(value):
            return f"{value!r} is not a valid percentage (like '50%')"
        return None
    return f"expected an integer or a percentage, got {describe(value)}"


def check_quantity(value: object) -> str | None:
    """A resource quantity (``500m``, ``128Mi``, ``1.5``)."""
    try:
        quantity.parse_quantity(value)
    except quantity.QuantityError as exc:
        return str(exc)
    return None


def check_ip(value: str) -> str | None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return f"{value!r} is not a valid IP address"
    return None


def check_ip_or_cidr(value: str) -> str | None:
    try:
        if "/" in value:
            ipaddress.ip_network(value, strict=False)
        else:
            ipaddress.ip_address(value)
    except ValueError:
        return f"{value!r} is not a valid IP address or CIDR block"
    return None


def check_port_string(value: str) -> str | None:
    """A port written as a string (Istio AuthorizationPolicy ``ports``, ``destination.port``)."""
    if not _DIGITS.fullmatch(value) or len(value) > 5:
        return f"{value!r} is not a valid port number"
    return check_port(int(value))


def check_gateway_hostname(value: str) -> str | None:
    if len(value) > DNS1123_SUBDOMAIN_MAX or not _GW_HOSTNAME.fullmatch(value):
        return f"{value!r} is not a valid hostname (a DNS name, optionally starting with '*.')"
    return None


def check_gateway_protocol(value: str) -> str | None:
    if len(value) > DNS1123_SUBDOMAIN_MAX or not _GW_PROTOCOL.fullmatch(value):
        return f"{value!r} is not a valid listener protocol"
    return None


def check_gateway_duration(value: str) -> str | None:
    if not _GW_DURATION.fullmatch(value):
        return f"{value!r} is not a valid Gateway API duration (like '10s', '500ms', '1h30m')"
    return None


def check_non_empty(value: str) -> str | None:
    return None if value else "must not be empty"


def describe(value: object) -> str:
    """A short rendering of a rejected value for error messages (YAML spelling for scalars)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:60] + "…"
        return f"string {shown!r}"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__
