"""API: communities, their buildings, the residents directory and its imports."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, UploadFile
from rq import Retry

from accounts import service as accounts_service
from accounts.deps import AdminUser, CurrentUser, roles
from accounts.models import Role, StaffUser
from core.deps import SessionDep, SettingsDep
from core.errors import InvalidInput, PayloadTooLarge
from core.masking import mask_mobile, mask_name
from core.queue import enqueue
from core.routing import CommittingRoute
from core.types import PathId
from core.uploads import UploadLimits, parse_job_timeout
from org import service, tasks
from org.models import IdentityKind, Resident, ResidentImport
from org.schemas import (
    BuildingRead,
    CommunityCreate,
    CommunityRead,
    ImportRead,
    ResidentCreate,
    ResidentPage,
    ResidentRead,
    RoomRead,
    UnitRead,
)

router = APIRouter(prefix="/api", tags=["organisation"], route_class=CommittingRoute)

# Residents' details are for the people who serve them, not for the PR desk.
DirectoryUser = Annotated[StaffUser, Depends(roles(Role.agent, Role.supervisor, Role.admin))]


def resident_read(resident: Resident) -> ResidentRead:
    mobile = resident.identity(IdentityKind.mobile)
    return ResidentRead(
        id=resident.id,
        community_id=resident.community_id,
        name=mask_name(resident.name),
        role=resident.role,
        room=service.room_label(resident.room),
        mobile=mask_mobile(mobile) if mobile else None,
        has_wechat=resident.identity(IdentityKind.wechat_openid) is not None,
        has_app=resident.identity(IdentityKind.app_user_id) is not None,
        note=resident.note,
        created_at=resident.created_at,
    )


def import_read(record: ResidentImport) -> ImportRead:
    return ImportRead(
        id=record.id,
        community_id=record.community_id,
        filename=record.filename,
        status=record.status,
        attempts=record.attempts,
        total_rows=record.total_rows,
        processed_rows=record.processed_rows,
        report=record.report,
        created_at=record.created_at,
        finished_at=record.finished_at,
    )


@router.get("/communities", response_model=list[CommunityRead])
def list_communities(user: CurrentUser, session: SessionDep) -> list[CommunityRead]:
    ids = accounts_service.accessible_community_ids(session=session, user=user)
    return [CommunityRead.model_validate(c) for c in service.list_communities(session=session, ids=ids)]


@router.post("/communities", response_model=CommunityRead, status_code=201)
def create_community(body: CommunityCreate, admin: AdminUser, session: SessionDep) -> CommunityRead:
    community = service.create_community(session=session, company_id=admin.company_id, **body.model_dump())
    return CommunityRead.model_validate(community)


@router.get("/communities/{community_id}", response_model=CommunityRead)
def get_community(community_id: PathId, user: CurrentUser, session: SessionDep) -> CommunityRead:
    community = accounts_service.require_community(session=session, user=user, community_id=community_id)
    return CommunityRead.model_validate(community)


@router.get("/communities/{community_id}/buildings", response_model=list[BuildingRead])
def list_buildings(community_id: PathId, user: CurrentUser, session: SessionDep) -> list[BuildingRead]:
    accounts_service.require_community(session=session, user=user, community_id=community_id)
    return [
        BuildingRead(
            id=b.id,
            name=b.name,
            units=[
                UnitRead(id=u.id, name=u.name, rooms=[RoomRead(id=r.id, number=r.number) for r in u.rooms])
                for u in b.units
            ],
        )
        for b in service.building_tree(session=session, community_id=community_id)
    ]


@router.get("/communities/{community_id}/residents", response_model=ResidentPage)
def list_residents(
    community_id: PathId,
    user: DirectoryUser,
    session: SessionDep,
    q: Annotated[str | None, Query(max_length=64)] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ResidentPage:
    accounts_service.require_community(session=session, user=user, community_id=community_id)
    rows, total = service.list_residents(
        session=session, community_id=community_id, q=q, offset=offset, limit=limit
    )
    return ResidentPage(items=[resident_read(r) for r in rows], total=total, offset=offset, limit=limit)


@router.post("/communities/{community_id}/residents", response_model=ResidentRead, status_code=201)
def create_resident(
    community_id: PathId, body: ResidentCreate, user: DirectoryUser, session: SessionDep
) -> ResidentRead:
    accounts_service.require_community(session=session, user=user, community_id=community_id)
    place = (body.building, body.unit, body.room)
    if any(place) and not all(place):
        raise InvalidInput("楼栋、单元、房号需同时填写")
    room = None
    if body.building and body.unit and body.room:
        room = service.ensure_room(
            session=session,
            community_id=community_id,
            building=body.building,
            unit=body.unit,
            number=body.room,
        )
    identities = [(IdentityKind.mobile, body.mobile)] if body.mobile else []
    resident = service.create_resident(
        session=session,
        community_id=community_id,
        name=body.name,
        role=body.role,
        room=room,
        identities=identities,
        note=body.note,
    )
    return resident_read(resident)


@router.get("/residents/{resident_id}", response_model=ResidentRead)
def get_resident(resident_id: PathId, user: DirectoryUser, session: SessionDep) -> ResidentRead:
    resident = service.get_resident(session=session, resident_id=resident_id)
    accounts_service.require_community(session=session, user=user, community_id=resident.community_id)
    return resident_read(resident)


@router.post("/communities/{community_id}/residents/imports", response_model=ImportRead, status_code=202)
def upload_residents(
    community_id: PathId, file: UploadFile, admin: AdminUser, session: SessionDep, settings: SettingsDep
) -> ImportRead:
    """Upload a CSV or XLSX of residents; the file is read and its rows imported by a worker (poll
    the import for its status and report). A file whose zip directory declares a bomb is refused
    here (413/422); one the worker cannot read ends "failed" with the reason in its report."""
    accounts_service.require_community(session=session, user=admin, community_id=community_id)
    content = file.file.read(settings.max_upload_bytes + 1)
    if len(content) > settings.max_upload_bytes:
        raise PayloadTooLarge(f"文件不能超过 {settings.max_upload_bytes // (1024 * 1024)} MB")
    record = service.start_import(
        session=session,
        community_id=community_id,
        filename=file.filename or "residents.csv",
        content=content,
        created_by=admin.id,
        limits=UploadLimits.from_settings(settings),
    )
    session.commit()  # the worker must see the row before it runs
    # No back-off: the job fails a bad file itself without retrying, so a retry is a dead worker.
    enqueue(
        tasks.import_residents,
        queue="low",
        import_id=record.id,
        job_timeout=max(600, parse_job_timeout(settings.upload_parse_timeout_seconds)),
        retry=Retry(max=3),
        settings=settings,
    )
    return import_read(record)


@router.get("/resident-imports/{import_id}", response_model=ImportRead)
def get_import(import_id: PathId, admin: AdminUser, session: SessionDep) -> ImportRead:
    record = service.get_import(session=session, import_id=import_id)
    accounts_service.require_community(session=session, user=admin, community_id=record.community_id)
    return import_read(record)
