"""The agent console's API, one router per family of pages:

- ``cases``: the queue, a case and its history, opening one, the actions on it
- ``live``: the live stream of changes for open consoles
- ``reports``: agents' workload, SLA and satisfaction reports
- ``config``: SLA policies, duty chains, canned replies
- ``work_orders`` and ``callbacks``: work orders and their flow, residents to call back
- ``ack``: the acknowledgement link of an emergency page

``reads`` turns cases, messages, events and work orders into the schemas they return. ``router``
is what the app includes; routes are matched in the order they are included here.
"""

from __future__ import annotations

from fastapi import APIRouter

from escalation.views import ack, callbacks, cases, config, live, reports, work_orders

router = APIRouter()
router.include_router(cases.router)
router.include_router(live.router)
router.include_router(reports.router)
router.include_router(config.router)
router.include_router(work_orders.router)
router.include_router(callbacks.router)
router.include_router(ack.router)
