"""The process that runs one document's Python snippets, in order, like a reader would.

Started by ``tests/docs/snippets.py`` with the stack's ``TRIGGERFISH_API_URL`` and
``TRIGGERFISH_SECRET_KEY`` set and the stack's project folder as its argument (so
``from tasks.hello import hello_world`` imports the example's tasks). It reads one
JSON request per line on stdin and answers one JSON line on stdout:
``{"ok": true}`` or ``{"ok": false, "error": "…"}``. Whatever a snippet prints goes
to stderr, so it cannot garble the answers.

A process of its own keeps the snippets' global state (the default client, the
task registry, ``sys.modules["tasks"]``) out of the test process, and one event
loop for its whole life lets a block's ``await`` use a client an earlier block
made, as in ``python -m asyncio``.
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import inspect
import json
import os
import sys
import traceback
import types
from typing import Any

import triggerfish
from triggerfish.sdk._registry import TaskRegistry, collecting_into


def is_ours(value: Any) -> bool:
    """Whether ``value`` is a module, class, function or object of the triggerfish package."""
    if isinstance(value, types.ModuleType):
        module = value.__name__
    elif isinstance(value, type | types.FunctionType | types.MethodType):
        module = getattr(value, "__module__", "") or ""
    else:
        module = type(value).__module__
    return module == "triggerfish" or module.startswith("triggerfish.")


def _chain(node: ast.expr) -> list[str] | None:
    """``a.b.c`` as ``["a", "b", "c"]``; None when the chain does not start at a name."""
    names: list[str] = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(names)]


def _local_names(fn: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> set[str]:
    args = fn.args
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
    names = {a.arg for a in every if a is not None}
    body = fn.body if isinstance(fn.body, list) else [fn.body]
    for stmt in body:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
    return names


class ApiCheck(ast.NodeVisitor):
    """Resolves every ``name.attr…`` and call on triggerfish objects that a snippet mentions.

    Function bodies of a snippet do not run when it is only defined, so this is
    what catches ``wait.create_tokn(...)`` or a misspelt keyword inside a task.
    Names local to a function (its parameters, what it assigns) are left alone.
    """

    def __init__(self, namespace: dict[str, Any]) -> None:
        self.namespace = namespace
        self.shadowed: set[str] = set()
        self.problems: list[str] = []

    def _resolve(self, node: ast.expr) -> tuple[bool, Any]:
        chain = _chain(node)
        if chain is None or chain[0] in self.shadowed or chain[0] not in self.namespace:
            return False, None
        value = self.namespace[chain[0]]
        if not is_ours(value):
            return False, None
        for i, attr in enumerate(chain[1:], start=1):
            if not hasattr(value, attr):
                where = ".".join(chain[: i + 1])
                self._report(
                    node, f"`{where}` does not exist ({type(value).__name__} has no {attr!r})"
                )
                return False, None
            value = getattr(value, attr)
        return True, value

    def _report(self, node: ast.AST, message: str) -> None:
        line = f"line {getattr(node, 'lineno', '?')}: {message}"
        if line not in self.problems:
            self.problems.append(line)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self._resolve(node)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        found, fn = self._resolve(node.func)
        # `*args`, `**options` or the docs' `f(...)` ("some arguments") cannot be bound
        spreads = any(
            isinstance(a, ast.Starred) or (isinstance(a, ast.Constant) and a.value is Ellipsis)
            for a in node.args
        ) or any(k.arg is None for k in node.keywords)
        if found and callable(fn) and not spreads:
            self._check_signature(node, fn)
        self.generic_visit(node)

    def _check_signature(self, node: ast.Call, fn: Any) -> None:
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):  # some builtins have none
            return
        try:
            signature.bind(*node.args, **{k.arg: k.value for k in node.keywords if k.arg})
        except TypeError as exc:
            self._report(node, f"`{ast.unparse(node.func)}(…)`: {exc}")

    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        outer = self.shadowed
        self.shadowed = outer | _local_names(node)
        self.generic_visit(node)
        self.shadowed = outer

    visit_FunctionDef = _visit_function
    visit_AsyncFunctionDef = _visit_function
    visit_Lambda = _visit_function


def check_api(tree: ast.AST, namespace: dict[str, Any]) -> None:
    checker = ApiCheck(namespace)
    checker.visit(tree)
    if checker.problems:
        raise AttributeError(
            "the snippet uses calls that do not exist:\n" + "\n".join(checker.problems)
        )


def public_names() -> dict[str, Any]:
    """What ``from triggerfish import *`` gives: the names a fragment may use unimported."""
    names: dict[str, Any] = {name: getattr(triggerfish, name) for name in triggerfish.__all__}
    names["triggerfish"] = triggerfish
    return names


class Session:
    """One document's snippets: a shared namespace and one event loop."""

    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {"__name__": "__snippets__", "__builtins__": builtins}
        self.loop = asyncio.new_event_loop()

    def execute(self, source: str, filename: str, namespace: dict[str, Any]) -> ast.Module:
        """Run ``source`` as module code; a top-level ``await`` runs on the session's loop."""
        tree = ast.parse(source, filename)
        code = compile(tree, filename, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        result = eval(code, namespace)
        if inspect.iscoroutine(result):
            self.loop.run_until_complete(result)
        return tree

    def handle(self, request: dict[str, Any]) -> None:
        mode, source, filename = request["mode"], request["code"], request["filename"]
        if request.get("setup"):
            self.execute(request["setup"], f"{filename} (setup)", self.namespace)
        if mode == "run":
            check_api(self.execute(source, filename, self.namespace), self.namespace)
        elif mode == "define":
            with collecting_into(TaskRegistry()):  # its task ids may repeat the example's
                tree = self.execute(source, filename, self.namespace)
            check_api(tree, self.namespace)
        elif mode == "fragment":
            # the body of a task: compiled inside an `async def` so `await` is allowed
            body = "".join("    " + line for line in source.splitlines(keepends=True))
            tree = ast.parse("async def __fragment__():\n" + (body or "    pass"), filename)
            ast.increment_lineno(tree, -1)  # the header line is not in the document
            compile(tree, filename, "exec")
            check_api(tree, {**public_names(), **self.namespace})
        else:
            raise ValueError(f"unknown snippet mode {mode!r}")


def main() -> None:
    sys.path.insert(0, sys.argv[1])
    os.chdir(sys.argv[1])
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # snippets' prints go where the log goes
    sys.stdout = sys.stderr
    session = Session()
    for line in sys.stdin:
        try:
            session.handle(json.loads(line))
            answer: dict[str, Any] = {"ok": True}
        except BaseException:  # a snippet may raise anything, SystemExit included
            answer = {"ok": False, "error": traceback.format_exc()}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


if __name__ == "__main__":
    main()
