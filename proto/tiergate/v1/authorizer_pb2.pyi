import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Effect(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EFFECT_UNSPECIFIED: _ClassVar[Effect]
    PERMIT: _ClassVar[Effect]
    DENY: _ClassVar[Effect]
EFFECT_UNSPECIFIED: Effect
PERMIT: Effect
DENY: Effect

class Subject(_message.Message):
    __slots__ = ("id", "org_id", "org_type", "region", "real_name_verified")
    ID_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    ORG_TYPE_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    REAL_NAME_VERIFIED_FIELD_NUMBER: _ClassVar[int]
    id: str
    org_id: str
    org_type: str
    region: str
    real_name_verified: bool
    def __init__(self, id: _Optional[str] = ..., org_id: _Optional[str] = ..., org_type: _Optional[str] = ..., region: _Optional[str] = ..., real_name_verified: _Optional[bool] = ...) -> None: ...

class Resource(_message.Message):
    __slots__ = ("id", "catalog_class", "tier", "personal", "owner_org_id", "shareable")
    ID_FIELD_NUMBER: _ClassVar[int]
    CATALOG_CLASS_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    PERSONAL_FIELD_NUMBER: _ClassVar[int]
    OWNER_ORG_ID_FIELD_NUMBER: _ClassVar[int]
    SHAREABLE_FIELD_NUMBER: _ClassVar[int]
    id: str
    catalog_class: str
    tier: str
    personal: bool
    owner_org_id: str
    shareable: bool
    def __init__(self, id: _Optional[str] = ..., catalog_class: _Optional[str] = ..., tier: _Optional[str] = ..., personal: _Optional[bool] = ..., owner_org_id: _Optional[str] = ..., shareable: _Optional[bool] = ...) -> None: ...

class Context(_message.Message):
    __slots__ = ("time", "storage_region", "deidentified", "consent", "security_assessment")
    TIME_FIELD_NUMBER: _ClassVar[int]
    STORAGE_REGION_FIELD_NUMBER: _ClassVar[int]
    DEIDENTIFIED_FIELD_NUMBER: _ClassVar[int]
    CONSENT_FIELD_NUMBER: _ClassVar[int]
    SECURITY_ASSESSMENT_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    storage_region: str
    deidentified: bool
    consent: bool
    security_assessment: bool
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., storage_region: _Optional[str] = ..., deidentified: _Optional[bool] = ..., consent: _Optional[bool] = ..., security_assessment: _Optional[bool] = ...) -> None: ...

class DecideRequest(_message.Message):
    __slots__ = ("subject", "resource", "action", "purpose", "context", "explain")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    subject: Subject
    resource: Resource
    action: str
    purpose: str
    context: Context
    explain: bool
    def __init__(self, subject: _Optional[_Union[Subject, _Mapping]] = ..., resource: _Optional[_Union[Resource, _Mapping]] = ..., action: _Optional[str] = ..., purpose: _Optional[str] = ..., context: _Optional[_Union[Context, _Mapping]] = ..., explain: _Optional[bool] = ...) -> None: ...

class Obligation(_message.Message):
    __slots__ = ("id", "params")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    id: str
    params: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[str] = ..., params: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Reason(_message.Message):
    __slots__ = ("rule_id", "effect", "citation", "message", "message_zh", "message_en", "grant_id")
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    EFFECT_FIELD_NUMBER: _ClassVar[int]
    CITATION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ZH_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_EN_FIELD_NUMBER: _ClassVar[int]
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    effect: Effect
    citation: str
    message: str
    message_zh: str
    message_en: str
    grant_id: str
    def __init__(self, rule_id: _Optional[str] = ..., effect: _Optional[_Union[Effect, str]] = ..., citation: _Optional[str] = ..., message: _Optional[str] = ..., message_zh: _Optional[str] = ..., message_en: _Optional[str] = ..., grant_id: _Optional[str] = ...) -> None: ...

class Unmet(_message.Message):
    __slots__ = ("rule_id", "requirement", "citation", "message_zh", "message_en", "grant_id", "attribute")
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    REQUIREMENT_FIELD_NUMBER: _ClassVar[int]
    CITATION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ZH_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_EN_FIELD_NUMBER: _ClassVar[int]
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    requirement: str
    citation: str
    message_zh: str
    message_en: str
    grant_id: str
    attribute: str
    def __init__(self, rule_id: _Optional[str] = ..., requirement: _Optional[str] = ..., citation: _Optional[str] = ..., message_zh: _Optional[str] = ..., message_en: _Optional[str] = ..., grant_id: _Optional[str] = ..., attribute: _Optional[str] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("effect", "grant_id", "obligations", "reasons", "policy_revision", "decision_id", "valid_until", "explanation", "unmet")
    EFFECT_FIELD_NUMBER: _ClassVar[int]
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    OBLIGATIONS_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    POLICY_REVISION_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    UNMET_FIELD_NUMBER: _ClassVar[int]
    effect: Effect
    grant_id: str
    obligations: _containers.RepeatedCompositeFieldContainer[Obligation]
    reasons: _containers.RepeatedCompositeFieldContainer[Reason]
    policy_revision: str
    decision_id: str
    valid_until: _timestamp_pb2.Timestamp
    explanation: _struct_pb2.Struct
    unmet: _containers.RepeatedCompositeFieldContainer[Unmet]
    def __init__(self, effect: _Optional[_Union[Effect, str]] = ..., grant_id: _Optional[str] = ..., obligations: _Optional[_Iterable[_Union[Obligation, _Mapping]]] = ..., reasons: _Optional[_Iterable[_Union[Reason, _Mapping]]] = ..., policy_revision: _Optional[str] = ..., decision_id: _Optional[str] = ..., valid_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., explanation: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., unmet: _Optional[_Iterable[_Union[Unmet, _Mapping]]] = ...) -> None: ...

class RequestError(_message.Message):
    __slots__ = ("message", "problems")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    message: str
    problems: _containers.RepeatedCompositeFieldContainer[Problem]
    def __init__(self, message: _Optional[str] = ..., problems: _Optional[_Iterable[_Union[Problem, _Mapping]]] = ...) -> None: ...

class Problem(_message.Message):
    __slots__ = ("attribute", "value", "allowed", "message", "message_zh")
    ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ZH_FIELD_NUMBER: _ClassVar[int]
    attribute: str
    value: str
    allowed: _containers.RepeatedScalarFieldContainer[str]
    message: str
    message_zh: str
    def __init__(self, attribute: _Optional[str] = ..., value: _Optional[str] = ..., allowed: _Optional[_Iterable[str]] = ..., message: _Optional[str] = ..., message_zh: _Optional[str] = ...) -> None: ...

class DecideBatchRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[DecideRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[DecideRequest, _Mapping]]] = ...) -> None: ...

class DecideBatchResult(_message.Message):
    __slots__ = ("decision", "error")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    decision: Decision
    error: RequestError
    def __init__(self, decision: _Optional[_Union[Decision, _Mapping]] = ..., error: _Optional[_Union[RequestError, _Mapping]] = ...) -> None: ...

class DecideBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[DecideBatchResult]
    def __init__(self, results: _Optional[_Iterable[_Union[DecideBatchResult, _Mapping]]] = ...) -> None: ...

class GetPolicyInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReloadError(_message.Message):
    __slots__ = ("failed_at", "message", "diagnostics")
    FAILED_AT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DIAGNOSTICS_FIELD_NUMBER: _ClassVar[int]
    failed_at: _timestamp_pb2.Timestamp
    message: str
    diagnostics: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, failed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., message: _Optional[str] = ..., diagnostics: _Optional[_Iterable[str]] = ...) -> None: ...

class PolicyInfo(_message.Message):
    __slots__ = ("policy_revision", "loaded_at", "rule_count", "grant_count", "policy_dir", "last_reload_error", "calls_in_flight", "shadow_revision", "shadow_compared", "shadow_differences")
    POLICY_REVISION_FIELD_NUMBER: _ClassVar[int]
    LOADED_AT_FIELD_NUMBER: _ClassVar[int]
    RULE_COUNT_FIELD_NUMBER: _ClassVar[int]
    GRANT_COUNT_FIELD_NUMBER: _ClassVar[int]
    POLICY_DIR_FIELD_NUMBER: _ClassVar[int]
    LAST_RELOAD_ERROR_FIELD_NUMBER: _ClassVar[int]
    CALLS_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    SHADOW_REVISION_FIELD_NUMBER: _ClassVar[int]
    SHADOW_COMPARED_FIELD_NUMBER: _ClassVar[int]
    SHADOW_DIFFERENCES_FIELD_NUMBER: _ClassVar[int]
    policy_revision: str
    loaded_at: _timestamp_pb2.Timestamp
    rule_count: int
    grant_count: int
    policy_dir: str
    last_reload_error: ReloadError
    calls_in_flight: int
    shadow_revision: str
    shadow_compared: int
    shadow_differences: int
    def __init__(self, policy_revision: _Optional[str] = ..., loaded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rule_count: _Optional[int] = ..., grant_count: _Optional[int] = ..., policy_dir: _Optional[str] = ..., last_reload_error: _Optional[_Union[ReloadError, _Mapping]] = ..., calls_in_flight: _Optional[int] = ..., shadow_revision: _Optional[str] = ..., shadow_compared: _Optional[int] = ..., shadow_differences: _Optional[int] = ...) -> None: ...
