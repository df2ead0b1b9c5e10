"""Importing the residents directory from CSV or XLSX, with an error for each bad row.

Valid rows are imported; each bad row is reported with its row number, column and reason, and
nothing of it is stored. A resident already in the directory (same mobile number in the same
community) is updated, so importing the same file twice changes nothing the second time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from core.errors import AnjuError, InvalidInput
from core.masking import mask_mobile
from core.tables import keyed_rows, read_raw_rows
from org import service
from org.models import IdentityKind, Resident, ResidentRole

# Header → field. Chinese headers are what property staff export from their systems.
COLUMNS: dict[str, str] = {
    "姓名": "name",
    "name": "name",
    "住户姓名": "name",
    "手机号": "mobile",
    "手机": "mobile",
    "电话": "mobile",
    "联系电话": "mobile",
    "mobile": "mobile",
    "楼栋": "building",
    "楼号": "building",
    "building": "building",
    "单元": "unit",
    "unit": "unit",
    "房号": "room",
    "房间号": "room",
    "门牌号": "room",
    "room": "room",
    "身份": "role",
    "住户类型": "role",
    "role": "role",
    "微信openid": "wechat_openid",
    "openid": "wechat_openid",
    "wechat_openid": "wechat_openid",
    "app用户id": "app_user_id",
    "app_user_id": "app_user_id",
    "备注": "note",
    "note": "note",
}
ROLE_ALIASES = {
    "业主": ResidentRole.owner,
    "租户": ResidentRole.tenant,
    "家属": ResidentRole.family,
    "owner": ResidentRole.owner,
    "tenant": ResidentRole.tenant,
    "family": ResidentRole.family,
}


@dataclass
class RowError:
    row: int  # as a spreadsheet shows it: the header is row 1
    column: str
    message: str


@dataclass
class ImportReport:
    total: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImportReport:
        return cls(
            total=data.get("total", 0),
            created=data.get("created", 0),
            updated=data.get("updated", 0),
            unchanged=data.get("unchanged", 0),
            errors=[RowError(**e) for e in data.get("errors", [])],
        )


def read_table(filename: str, content: bytes) -> list[dict[str, str]]:
    """Rows of a residents CSV/XLSX file, keyed by field."""
    return keyed_rows(
        read_raw_rows(filename, content),
        columns=COLUMNS,
        required="name",
        missing_message="缺少“姓名”列；表头应包含：姓名、手机号、楼栋、单元、房号、身份",
    )


# The columns' sizes in the database: a longer value is the row's error, never the whole import's.
MAX_LENGTHS = (
    ("name", "姓名", 64),
    ("building", "楼栋", 64),
    ("unit", "单元", 64),
    ("room", "房号", 32),
    ("wechat_openid", "微信openid", 128),
    ("app_user_id", "App用户ID", 128),
    ("note", "备注", 500),
)


def check_rows(rows: list[dict[str, str]]) -> tuple[list[tuple[int, dict[str, str]]], list[RowError]]:
    """Split rows into (row number, row) that can be applied and the errors of the others.

    Pure: a retried import computes the same split again.
    """
    valid: list[tuple[int, dict[str, str]]] = []
    errors: list[RowError] = []
    seen_mobiles: dict[str, int] = {}
    for index, row in enumerate(rows, start=2):
        row_errors = _check_row(row, index, seen_mobiles)
        if row_errors:
            errors.extend(row_errors)
        else:
            valid.append((index, row))
    return valid, errors


def apply_rows(
    *, session: Session, community_id: int, rows: list[tuple[int, dict[str, str]]], report: ImportReport
) -> None:
    """Apply checked rows in the current transaction, counting into ``report``."""
    for index, row in rows:
        try:
            with session.begin_nested():
                outcome = _apply_row(session=session, community_id=community_id, row=row)
        except AnjuError as exc:
            report.errors.append(RowError(index, "", exc.message))
            continue
        setattr(report, outcome, getattr(report, outcome) + 1)


def import_rows(*, session: Session, community_id: int, rows: list[dict[str, str]]) -> ImportReport:
    """Import all rows in the current transaction (small files, tests)."""
    valid, errors = check_rows(rows)
    report = ImportReport(total=len(rows), errors=errors)
    apply_rows(session=session, community_id=community_id, rows=valid, report=report)
    report.errors.sort(key=lambda e: e.row)
    return report


def _check_row(row: dict[str, str], index: int, seen_mobiles: dict[str, int]) -> list[RowError]:
    errors = []
    if not row.get("name"):
        errors.append(RowError(index, "姓名", "姓名不能为空"))
    mobile = row.get("mobile", "")
    if mobile:
        try:
            normalised = service.normalise_mobile(mobile)
        except InvalidInput as exc:
            errors.append(RowError(index, "手机号", f"{exc.message}: {mask_mobile(mobile)}"))
        else:
            if normalised in seen_mobiles:
                errors.append(RowError(index, "手机号", f"与第 {seen_mobiles[normalised]} 行手机号重复"))
            else:
                seen_mobiles[normalised] = index
    place = [row.get("building", ""), row.get("unit", ""), row.get("room", "")]
    if any(place) and not all(place):
        errors.append(RowError(index, "房号", "楼栋、单元、房号需同时填写"))
    if row.get("role") and row["role"].lower() not in ROLE_ALIASES:
        errors.append(RowError(index, "身份", f"身份应为 业主/租户/家属，而不是“{row['role']}”"))
    for key, column, limit in MAX_LENGTHS:
        if len(row.get(key, "")) > limit:
            errors.append(RowError(index, column, f"{column}不能超过 {limit} 个字"))
    return errors


def _apply_row(*, session: Session, community_id: int, row: dict[str, str]) -> str:
    room = None
    if row.get("building"):
        room = service.ensure_room(
            session=session,
            community_id=community_id,
            building=row["building"],
            unit=row["unit"],
            number=row["room"],
        )
    role = ROLE_ALIASES[row["role"].lower()] if row.get("role") else ResidentRole.owner
    identities = [
        (kind, row[key])
        for key, kind in (
            ("mobile", IdentityKind.mobile),
            ("wechat_openid", IdentityKind.wechat_openid),
            ("app_user_id", IdentityKind.app_user_id),
        )
        if row.get(key)
    ]
    existing: Resident | None = None
    if row.get("mobile"):
        existing = service.find_resident(
            session=session, community_id=community_id, kind=IdentityKind.mobile, value=row["mobile"]
        )
    if existing is None:
        service.create_resident(
            session=session,
            community_id=community_id,
            name=row["name"],
            role=role,
            room=room,
            identities=identities,
            note=row.get("note") or None,
        )
        return "created"
    before = (
        existing.name,
        existing.role,
        existing.room_id,
        existing.note,
        sorted((i.kind, i.value) for i in existing.identities),
    )
    existing.name, existing.role = row["name"], role
    existing.room_id = room.id if room else existing.room_id
    existing.note = row.get("note") or existing.note
    for kind, value in identities:
        service.set_identity(session=session, resident=existing, kind=kind, value=value)
    session.flush()
    after = (
        existing.name,
        existing.role,
        existing.room_id,
        existing.note,
        sorted((i.kind, i.value) for i in existing.identities),
    )
    return "unchanged" if before == after else "updated"
