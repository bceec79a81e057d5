"""Create the schema, add rows and query them with the ORM; the database URL comes from
INVENTORY_DB (default: an in-memory SQLite database)."""

import os
import sys

from sqlalchemy import ForeignKey, String, create_engine, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Shelf(Base):
    __tablename__ = "shelf"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(30))
    items: Mapped[list["Item"]] = relationship(back_populates="shelf")


class Item(Base):
    __tablename__ = "item"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(30))
    count: Mapped[int]
    shelf_id: Mapped[int] = mapped_column(ForeignKey("shelf.id"))
    shelf: Mapped[Shelf] = relationship(back_populates="items")


def main() -> int:
    engine = create_engine(os.environ.get("INVENTORY_DB", "sqlite://"))
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        a, b = Shelf(name="A"), Shelf(name="B")
        a.items = [Item(name="bolt", count=40), Item(name="nut", count=60)]
        b.items = [Item(name="gear", count=7)]
        session.add_all([a, b])
        session.commit()
        rows = session.execute(
            select(Shelf.name, func.sum(Item.count))
            .join(Shelf.items)
            .group_by(Shelf.name)
            .order_by(Shelf.name)
        ).all()
        for name, total in rows:
            print(f"shelf {name}: {total} items")
    import sqlalchemy

    print(f"sqlalchemy {sqlalchemy.__version__} on sqlite: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
