"""rq jobs of the intake: each takes an id; the database row is the truth."""

from __future__ import annotations

from core.settings import get_settings


def process_inbound(*, inbound_id: int) -> int | None:
    from channels import service

    return service.process_inbound(get_settings(), inbound_id)


def deliver(*, delivery_id: int) -> str:
    from channels import service

    return service.deliver(get_settings(), delivery_id).value


def sweep_inbound() -> dict[str, int]:
    """Periodic (the scheduler): see channels.service.sweep_inbound."""
    from channels import service

    return service.sweep_inbound(get_settings())
