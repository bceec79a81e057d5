"""A click command that renders its package data with rich."""

from importlib.resources import files

import click
from rich.console import Console
from rich.table import Table


@click.command()
@click.argument("name")
@click.option("--count", default=1, show_default=True, help="How many greetings.")
def cli(name: str, count: int) -> None:
    """Greet NAME with the phrases in greeter/data/phrases.txt."""
    phrases = files("greeter").joinpath("data/phrases.txt").read_text(encoding="utf-8").split("\n")
    table = Table("n", "greeting", title="greeter")
    for i in range(count):
        table.add_row(str(i + 1), phrases[i % len(phrases)].format(name=name))
    Console(width=60, color_system=None).print(table)
