"""What the child processes run: importable by name, as multiprocessing requires."""

from multiprocessing.connection import Connection


def square(x: int) -> int:
    return x * x


def child(conn: Connection) -> None:
    conn.send(sum(square(i) for i in range(5)))
    conn.close()
