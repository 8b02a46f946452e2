from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AuditQuery(_message.Message):
    __slots__ = ("subject", "org", "dataset", "owner", "effect", "rule", "grant", "chain", "since", "until", "limit", "after")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    ORG_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    EFFECT_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    GRANT_FIELD_NUMBER: _ClassVar[int]
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    subject: str
    org: str
    dataset: str
    owner: str
    effect: str
    rule: str
    grant: str
    chain: str
    since: str
    until: str
    limit: int
    after: AuditPosition
    def __init__(self, subject: _Optional[str] = ..., org: _Optional[str] = ..., dataset: _Optional[str] = ..., owner: _Optional[str] = ..., effect: _Optional[str] = ..., rule: _Optional[str] = ..., grant: _Optional[str] = ..., chain: _Optional[str] = ..., since: _Optional[str] = ..., until: _Optional[str] = ..., limit: _Optional[int] = ..., after: _Optional[_Union[AuditPosition, _Mapping]] = ...) -> None: ...

class AuditPosition(_message.Message):
    __slots__ = ("chain", "seq")
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    chain: str
    seq: int
    def __init__(self, chain: _Optional[str] = ..., seq: _Optional[int] = ...) -> None: ...

class AuditFollow(_message.Message):
    __slots__ = ("chain",)
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    chain: str
    def __init__(self, chain: _Optional[str] = ..., **kwargs) -> None: ...

class AuditEntry(_message.Message):
    __slots__ = ("chain", "seq", "record")
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    chain: str
    seq: int
    record: bytes
    def __init__(self, chain: _Optional[str] = ..., seq: _Optional[int] = ..., record: _Optional[bytes] = ...) -> None: ...

class GetCheckpointsRequest(_message.Message):
    __slots__ = ("chain",)
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    chain: str
    def __init__(self, chain: _Optional[str] = ...) -> None: ...

class Checkpoints(_message.Message):
    __slots__ = ("notes",)
    NOTES_FIELD_NUMBER: _ClassVar[int]
    notes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, notes: _Optional[_Iterable[str]] = ...) -> None: ...
