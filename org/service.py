"""Communities, their buildings and rooms, and the residents directory."""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, selectinload

from core.db import Database, utcnow
from core.errors import AnjuError, Conflict, InvalidInput, NotFound
from core.tables import check_table
from core.uploads import UploadLimits, cpu_budget, default_limits, is_timeout
from org.models import (
    Building,
    Community,
    Company,
    IdentityKind,
    ImportStatus,
    Resident,
    ResidentIdentity,
    ResidentImport,
    ResidentRole,
    Room,
    Unit,
)

MOBILE_RE = re.compile(r"^1[3-9]\d{9}$")


def normalise_mobile(value: str) -> str:
    """13812345678 from '+86 138-1234-5678', '0086 13812345678', '138 1234 5678'."""
    digits = re.sub(r"[\s\-()]", "", value.strip())
    if digits.startswith("+86"):
        digits = digits[3:]
    elif digits.startswith("0086"):
        digits = digits[4:]
    elif digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    if not MOBILE_RE.match(digits):
        raise InvalidInput("手机号格式不正确（应为 11 位大陆手机号）")
    return digits


def create_company(*, session: Session, code: str, name: str, service_phone: str | None = None) -> Company:
    if session.scalar(select(Company).where(Company.code == code)) is not None:
        raise Conflict(f"公司编码 {code} 已存在")
    company = Company(code=code, name=name, service_phone=service_phone)
    session.add(company)
    session.flush()
    return company


def create_community(
    *,
    session: Session,
    company_id: int,
    code: str,
    name: str,
    city: str | None = None,
    address: str | None = None,
    duty_phone: str | None = None,
) -> Community:
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{1,62}", code):
        raise InvalidInput("小区编码只能用小写字母、数字和连字符（用于网址）")
    if session.get(Company, company_id) is None:
        raise NotFound("公司不存在")
    if session.scalar(select(Community).where(Community.code == code)) is not None:
        raise Conflict(f"小区编码 {code} 已存在")
    community = Community(
        company_id=company_id, code=code, name=name, city=city, address=address, duty_phone=duty_phone
    )
    session.add(community)
    session.flush()
    return community


def list_communities(*, session: Session, ids: set[int]) -> list[Community]:
    if not ids:
        return []
    return list(session.scalars(select(Community).where(Community.id.in_(ids)).order_by(Community.id)))


def get_community(*, session: Session, community_id: int) -> Community:
    community = session.get(Community, community_id)
    if community is None:
        raise NotFound("小区不存在")
    return community


def get_community_by_code(*, session: Session, code: str) -> Community:
    community = session.scalar(select(Community).where(Community.code == code))
    if community is None:
        raise NotFound(f"小区 {code} 不存在")
    return community


def ensure_room(*, session: Session, community_id: int, building: str, unit: str, number: str) -> Room:
    """The room 3栋 / 1单元 / 1502 of a community, creating building, unit and room as needed."""
    b = session.scalar(
        select(Building).where(Building.community_id == community_id, Building.name == building)
    )
    if b is None:
        b = Building(community_id=community_id, name=building)
        session.add(b)
        session.flush()
    u = session.scalar(select(Unit).where(Unit.building_id == b.id, Unit.name == unit))
    if u is None:
        u = Unit(building_id=b.id, name=unit)
        session.add(u)
        session.flush()
    r = session.scalar(select(Room).where(Room.unit_id == u.id, Room.number == number))
    if r is None:
        r = Room(unit_id=u.id, number=number)
        session.add(r)
        session.flush()
    return r


def room_label(room: Room | None) -> str | None:
    if room is None:
        return None
    return f"{room.unit.building.name}{room.unit.name}{room.number}"


def building_tree(*, session: Session, community_id: int) -> list[Building]:
    return list(
        session.scalars(
            select(Building)
            .where(Building.community_id == community_id)
            .options(selectinload(Building.units).selectinload(Unit.rooms))
            .order_by(Building.id)
        )
    )


def _resident_query(community_id: int):  # type: ignore[no-untyped-def]
    return (
        select(Resident)
        .where(Resident.community_id == community_id)
        .options(
            selectinload(Resident.identities),
            selectinload(Resident.room).selectinload(Room.unit).selectinload(Unit.building),
        )
    )


def list_residents(
    *, session: Session, community_id: int, q: str | None = None, offset: int = 0, limit: int = 50
) -> tuple[list[Resident], int]:
    query = _resident_query(community_id)
    if q:
        like = f"%{q.strip()}%"
        query = query.where(
            or_(
                Resident.name.like(like),
                Resident.id.in_(
                    select(ResidentIdentity.resident_id).where(ResidentIdentity.value.like(like))
                ),
            )
        )
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    rows = list(session.scalars(query.order_by(Resident.id).offset(offset).limit(limit)))
    return rows, total


def get_resident(*, session: Session, resident_id: int) -> Resident:
    resident = session.get(Resident, resident_id)
    if resident is None:
        raise NotFound("住户不存在")
    return resident


def find_resident(*, session: Session, community_id: int, kind: IdentityKind, value: str) -> Resident | None:
    """The resident a channel identity belongs to in a community (None for a stranger)."""
    if kind is IdentityKind.mobile:
        value = normalise_mobile(value)
    identity = session.scalar(
        select(ResidentIdentity).where(
            ResidentIdentity.community_id == community_id,
            ResidentIdentity.kind == kind,
            ResidentIdentity.value == value,
        )
    )
    return identity.resident if identity else None


def set_identity(*, session: Session, resident: Resident, kind: IdentityKind, value: str) -> None:
    """Attach (or move) a channel identity to a resident; one identity names one resident."""
    if kind is IdentityKind.mobile:
        value = normalise_mobile(value)
    owner = find_resident(session=session, community_id=resident.community_id, kind=kind, value=value)
    if owner is not None and owner.id != resident.id:
        raise Conflict(f"该{'手机号' if kind is IdentityKind.mobile else '账号'}已属于另一位住户")
    for identity in resident.identities:
        if identity.kind == kind:
            identity.value = value
            return
    resident.identities.append(ResidentIdentity(community_id=resident.community_id, kind=kind, value=value))


def create_resident(
    *,
    session: Session,
    community_id: int,
    name: str,
    role: ResidentRole = ResidentRole.owner,
    room: Room | None = None,
    identities: Sequence[tuple[IdentityKind, str]] = (),
    note: str | None = None,
) -> Resident:
    if not name.strip():
        raise InvalidInput("住户姓名不能为空")
    resident = Resident(
        community_id=community_id, name=name.strip(), role=role, room_id=room.id if room else None, note=note
    )
    session.add(resident)
    session.flush()
    for kind, value in identities:
        set_identity(session=session, resident=resident, kind=kind, value=value)
    session.flush()
    return resident


def start_import(
    *,
    session: Session,
    community_id: int,
    filename: str,
    content: bytes,
    created_by: int | None,
    limits: UploadLimits | None = None,
) -> ResidentImport:
    """Check what is cheap (type, not empty, no declared zip bomb → error now), store the file,
    return the pending import. Its rows are read by the import job, not here."""
    check_table(filename, content, limits=limits or default_limits())
    record = ResidentImport(
        community_id=community_id,
        filename=filename[:255],
        content=content,
        status=ImportStatus.pending,
        created_by=created_by,
    )
    session.add(record)
    session.flush()
    return record


def get_import(*, session: Session, import_id: int) -> ResidentImport:
    record = session.get(ResidentImport, import_id)
    if record is None:
        raise NotFound("导入任务不存在")
    return record


def fail_import(*, database: Database, import_id: int, reason: str) -> None:
    """The stored file cannot be read: the import ends failed with the reason (for the admin)."""
    with database.session() as session:
        record = get_import(session=session, import_id=import_id)
        record.status = ImportStatus.failed
        record.finished_at = utcnow()
        record.report = {**(record.report or {}), "error": reason}


IMPORT_BATCH_ROWS = 200  # rows per transaction: SQLite readers are never held up for long


def _locked_import(session: Session, import_id: int) -> ResidentImport:
    record = session.scalar(select(ResidentImport).where(ResidentImport.id == import_id).with_for_update())
    if record is None:
        raise NotFound("导入任务不存在")
    return record


def run_import(*, database: Database, import_id: int, parse_seconds: float = 0) -> ResidentImport:
    """Apply a stored import in batches, each committed with its progress.

    Each batch locks the import row and reads the progress inside its own transaction, so a run
    that died part-way is resumed after its last whole batch, and even two runs at once (a
    worker presumed dead that was only slow) apply every row exactly once.
    """
    from org.imports import ImportReport, apply_rows, check_rows, read_table

    with database.session() as session:
        record = _locked_import(session, import_id)
        if record.status in (ImportStatus.done, ImportStatus.failed):
            return record  # a failed file is not read again (its reason is in the report)
        try:
            with cpu_budget(parse_seconds):
                rows = read_table(record.filename, record.content)
        except AnjuError:
            raise
        except BaseException as exc:  # the CPU budget or rq's job timeout, while reading the file
            if not is_timeout(exc):
                raise
            raise InvalidInput("读取文件超时（文件过于复杂），请拆分后重新导入") from None
        valid, errors = check_rows(rows)
        record.status = ImportStatus.running
        record.attempts += 1
        record.total_rows = len(valid)
        community_id = record.community_id
    while True:
        with database.session() as session:
            record = _locked_import(session, import_id)
            done = record.processed_rows
            if done >= len(valid) or record.status is ImportStatus.done:
                break
            batch = valid[done : done + IMPORT_BATCH_ROWS]
            counts = ImportReport.from_dict(record.report or {})
            apply_rows(session=session, community_id=community_id, rows=batch, report=counts)
            record.processed_rows = done + len(batch)
            record.report = counts.as_dict()
    with database.session() as session:
        record = _locked_import(session, import_id)
        if record.status is not ImportStatus.done:
            counts = ImportReport.from_dict(record.report or {})
            counts.total = len(rows)
            counts.errors = sorted(errors + counts.errors, key=lambda e: e.row)
            record.report = counts.as_dict()
            record.status = ImportStatus.done
            record.finished_at = utcnow()
    return record
