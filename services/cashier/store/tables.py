"""Tables of the cashier database (SQLAlchemy Core)."""

from __future__ import annotations

from sqlalchemy import MetaData

from libs.common.outbox_tables import add_messaging_tables

metadata = MetaData()
add_messaging_tables(metadata)
