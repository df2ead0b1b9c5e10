"""Work orders: the open list, one with its history, one made from a case, and the steps of its
flow, hand-offs between departments and photos of the work.
"""

from __future__ import annotations

from fastapi import APIRouter, UploadFile
from fastapi.responses import FileResponse

from accounts.deps import CurrentUser
from core.deps import SessionDep, SettingsDep
from core.errors import InvalidInput
from core.masking import mask_text
from core.routing import CommittingRoute
from core.types import PathId, QueryId
from escalation import schemas, work_orders
from escalation.models import WorkOrder, WorkOrderCategory, WorkOrderStatus
from escalation.views.reads import work_order_read

router = APIRouter(tags=["console"], route_class=CommittingRoute)


@router.get("/api/work-orders", response_model=list[schemas.WorkOrderRead])
def list_work_orders(
    user: CurrentUser, session: SessionDep, community_id: QueryId = None, status: str | None = None
) -> list[schemas.WorkOrderRead]:
    """Open work orders (or those of one status), the most urgent first."""
    try:
        which = WorkOrderStatus(status) if status else None
    except ValueError:
        raise InvalidInput("未知的工单状态") from None
    orders = work_orders.list_work_orders(session=session, user=user, community_id=community_id, status=which)
    return [work_order_read(o) for o in orders]


def _work_order_detail(session: SessionDep, order: WorkOrder) -> schemas.WorkOrderDetail:
    return schemas.WorkOrderDetail(
        order=work_order_read(order),
        events=[
            schemas.WorkOrderEventRead(
                id=e.id,
                text=mask_text(e.text),
                from_status=e.from_status,
                to_status=e.to_status,
                photos=e.photos or [],
                created_at=e.created_at.isoformat(),
            )
            for e in work_orders.work_order_events(session=session, order=order)
        ],
    )


@router.get("/api/work-orders/{order_id}", response_model=schemas.WorkOrderDetail)
def get_work_order(order_id: PathId, user: CurrentUser, session: SessionDep) -> schemas.WorkOrderDetail:
    return _work_order_detail(
        session, work_orders.get_work_order(session=session, user=user, order_id=order_id)
    )


@router.post("/api/cases/{case_id}/work-orders", response_model=schemas.WorkOrderRead, status_code=201)
def create_work_order(
    case_id: PathId,
    body: schemas.WorkOrderCreate,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
) -> schemas.WorkOrderRead:
    """A work order from the case, for the department that does the work."""
    order = work_orders.work_order_for_case(
        session=session,
        settings=settings,
        user=user,
        case_id=case_id,
        category=WorkOrderCategory(body.category),
        description=body.description,
        building=body.building,
        unit=body.unit,
        room=body.room,
    )
    return work_order_read(order)


@router.post("/api/work-orders/{order_id}/move", response_model=schemas.WorkOrderDetail)
def move_work_order(
    order_id: PathId,
    body: schemas.WorkOrderMove,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
) -> schemas.WorkOrderDetail:
    """发起 → 分配 → 执行 → 核验 → 完成, one step at a time."""
    order = work_orders.move_work_order(
        session=session,
        settings=settings,
        user=user,
        order_id=order_id,
        to=WorkOrderStatus(body.to),
        note=body.note,
        assignee_id=body.assignee_id,
        assignee_name=body.assignee_name,
    )
    return _work_order_detail(session, order)


@router.post("/api/work-orders/{order_id}/hand-off", response_model=schemas.WorkOrderDetail)
def hand_off_work_order(
    order_id: PathId, body: schemas.WorkOrderHandOff, user: CurrentUser, session: SessionDep
) -> schemas.WorkOrderDetail:
    order = work_orders.hand_off_work_order(
        session=session, user=user, order_id=order_id, department=body.department, note=body.note
    )
    return _work_order_detail(session, order)


@router.post("/api/work-orders/{order_id}/photos", response_model=schemas.WorkOrderDetail, status_code=201)
def add_work_order_photo(
    order_id: PathId, photo: UploadFile, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> schemas.WorkOrderDetail:
    """A photo of the work (JPEG, PNG or WebP, up to 5 MB)."""
    content = photo.file.read(work_orders.MAX_PHOTO_BYTES + 1)
    work_orders.add_work_order_photo(
        session=session, settings=settings, user=user, order_id=order_id, content=content
    )
    return _work_order_detail(
        session, work_orders.get_work_order(session=session, user=user, order_id=order_id)
    )


@router.get("/api/work-orders/{order_id}/photos/{name}")
def work_order_photo(
    order_id: PathId, name: str, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> FileResponse:
    path = work_orders.work_order_photo(
        session=session, settings=settings, user=user, order_id=order_id, name=name
    )
    return FileResponse(path)
