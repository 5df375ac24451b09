"""The generation itself: the same code in the app's process and in the task.

It reads a directory's context and answers typed commands; it never writes
state. Whoever runs it applies the commands: the app directly (local mode) or
the task through the app's signed internal API (remote mode).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field


class Item(BaseModel):
    name: str
    category: str
    url: str


class SetStatus(BaseModel):
    type: Literal["set_status"] = "set_status"
    status: Literal["generating", "ready", "failed"]


class AddItem(BaseModel):
    type: Literal["add_item"] = "add_item"
    item: Item


Command = Annotated[SetStatus | AddItem, Field(discriminator="type")]


class Commands(BaseModel):
    commands: list[Command] = Field(min_length=1)


def generate(context: dict[str, Any]) -> list[dict[str, Any]]:
    """The commands that fill a directory from its context (an LLM call in real life)."""
    directory = context["directory"]
    commands: list[BaseModel] = [SetStatus(status="generating")]
    for category in directory["categories"]:
        slug = category.lower().replace(" ", "-")
        item = Item(name=f"Best {category} tool", category=category, url=f"https://{slug}.example")
        commands.append(AddItem(item=item))
    commands.append(SetStatus(status="ready"))
    return [c.model_dump() for c in commands]
