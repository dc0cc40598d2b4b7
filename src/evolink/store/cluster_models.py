"""Tables of cluster mode (migration 0009): instance leases and the node registry (see store/leases.py)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from evolink.store.models import Base, UTCDateTime


class InstanceLease(Base):
    """Who may hold the instance's WhatsApp socket: `owner` until `expires_at` (database clock);
    `token` grows with every change of hands (fencing)."""

    __tablename__ = "instance_leases"
    instance_id: Mapped[str] = mapped_column(String(36), ForeignKey("instances.id", ondelete="CASCADE"),
                                             primary_key=True)
    owner: Mapped[str] = mapped_column(String(100), nullable=False, index=True)
    token: Mapped[int] = mapped_column(BigInteger, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class ClusterNode(Base):
    """A gateway node: where other nodes forward requests for its instances, and whether it is alive."""

    __tablename__ = "cluster_nodes"
    node_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    url: Mapped[str | None] = mapped_column(String(500))
    client_name: Mapped[str | None] = mapped_column(String(100))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
