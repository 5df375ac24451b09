"""``triggerfish init``: set Triggerfish up in an existing project.

Writes the config (``[tool.triggerfish]`` in ``pyproject.toml``, or a
``triggerfish.toml`` when there is no pyproject), a ``tasks/`` folder with an
example task, and a ``.env`` with the dev server's URL and a dev key (only dev
keys belong there: a task process can read files its user can). When the
project is a FastAPI or Flask app, a route that triggers the example is added
to the app's module; for Django, and for anything else, the snippet is printed.
Nothing that exists is overwritten, so running it twice changes nothing.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from triggerfish.cli._common import DEV_KEY_FILE, STATE_DIR, console, fail
from triggerfish.sdk._client import DEFAULT_API_URL

CONFIG = 'dirs = ["tasks"]\n'

EXAMPLE = '''"""An example task: trigger it with `triggerfish trigger hello-world --wait`."""

from triggerfish import logger, task


@task(id="hello-world")
def hello_world(payload: dict) -> dict:
    logger.info("greeting", who=payload.get("who"))
    return {"message": f"Hello {payload.get('who', 'world')}"}
'''

MARK = "# added by `triggerfish init`"

#: the route added to a FastAPI app (``{app}``: the app's variable)
FASTAPI_SNIPPET = """

{mark}: trigger the example task (tasks/example.py) from the app.
# The client reads TRIGGERFISH_API_URL and TRIGGERFISH_SECRET_KEY: run the app with
# `uvicorn {module}:{app} --env-file .env` (or export them) while `triggerfish dev` runs.
from triggerfish import Triggerfish as _Triggerfish


@{app}.post("/hello/{{who}}")
async def trigger_hello(who: str) -> dict[str, str]:
    client = _Triggerfish()
    try:
        handle = await client.tasks.trigger_async("hello-world", {{"who": who}})
    finally:
        await client.aclose()
    return {{"run_id": handle.id}}
"""

FLASK_SNIPPET = """

{mark}: trigger the example task (tasks/example.py) from the app.
# The client reads TRIGGERFISH_API_URL and TRIGGERFISH_SECRET_KEY: Flask loads .env
# when python-dotenv is installed; run `triggerfish dev` beside the app.
from triggerfish import Triggerfish as _Triggerfish


@{app}.post("/hello/<who>")
def trigger_hello(who: str) -> dict[str, str]:
    client = _Triggerfish()
    try:
        handle = client.tasks.trigger("hello-world", {{"who": who}})
    finally:
        client.close()
    return {{"run_id": handle.id}}
"""

DJANGO_SNIPPET = """# views.py
from django.http import JsonResponse
from triggerfish import Triggerfish

def trigger_hello(request, who):
    client = Triggerfish()  # TRIGGERFISH_API_URL / TRIGGERFISH_SECRET_KEY (see .env)
    try:
        handle = client.tasks.trigger("hello-world", {"who": who})
    finally:
        client.close()
    return JsonResponse({"run_id": handle.id})

# urls.py
path("hello/<str:who>", views.trigger_hello),
"""

PLAIN_SNIPPET = """from triggerfish import Triggerfish

client = Triggerfish()  # TRIGGERFISH_API_URL / TRIGGERFISH_SECRET_KEY (see .env)
handle = client.tasks.trigger("hello-world", {"who": "Ada"})
print(client.runs.poll(handle.id).output)
"""


@dataclass(frozen=True)
class App:
    """A web app found in the project: its framework, module file and app variable."""

    framework: str
    path: Path
    variable: str


_APP_PATTERNS = {
    "fastapi": re.compile(r"^(\w+)\s*=\s*(?:fastapi\.)?FastAPI\(", re.M),
    "flask": re.compile(r"^(\w+)\s*=\s*(?:flask\.)?Flask\(", re.M),
}
_NAMES = {"fastapi": "FastAPI", "flask": "Flask", "django": "Django"}
_SKIP = {".venv", "venv", ".git", "node_modules", "tasks", STATE_DIR, "__pycache__", "tests"}


def find_app(root: Path) -> App | None:
    """The FastAPI or Flask app of the project (the first module that makes one), or a
    Django project (its ``manage.py``), or None."""
    if (root / "manage.py").is_file():
        return App("django", root / "manage.py", "")
    for path in sorted(_python_files(root)):
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for framework, pattern in _APP_PATTERNS.items():
            found = pattern.search(text)
            if found:
                return App(framework, path, found.group(1))
    return None


def _python_files(root: Path) -> list[Path]:
    found: list[Path] = []
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).parts
        if not any(p in _SKIP or p.startswith(".") for p in parts[:-1]) and len(parts) <= 3:
            found.append(path)
    return found


def init(root: Path, api_url: str = DEFAULT_API_URL) -> None:
    """Set the project at ``root`` up; every step says what it did or left alone."""
    if not root.is_dir():
        raise fail(f"{root} is not a folder")
    _config(root)
    _tasks(root)
    key = _dev_key(root)
    _env_file(root, api_url, key)
    _gitignore(root)
    app = find_app(root)
    _snippet(root, app)
    console.print(
        "\n[bold]Next[/]: run [bold]triggerfish dev[/] here, then "
        '[bold]triggerfish trigger hello-world --payload \'{"who": "Ada"}\' --wait[/]'
    )


def _config(root: Path) -> None:
    pyproject, own = root / "pyproject.toml", root / "triggerfish.toml"
    if own.is_file():
        console.print(f"config       {own.name} exists: left as it is")
        return
    if pyproject.is_file():
        text = pyproject.read_text()
        try:
            has = "triggerfish" in tomllib.loads(text).get("tool", {})
        except tomllib.TOMLDecodeError as exc:
            raise fail(
                f"{pyproject} is not valid TOML ({exc}); fix it and run init again"
            ) from None
        if has:
            console.print("config       [tool.triggerfish] exists in pyproject.toml: left as it is")
            return
        sep = "" if text.endswith("\n") or not text else "\n"
        pyproject.write_text(f"{text}{sep}\n[tool.triggerfish]\n{CONFIG}")
        console.print("config       added [tool.triggerfish] to pyproject.toml")
        return
    own.write_text(f"# Triggerfish settings of this project\n{CONFIG}")
    console.print("config       wrote triggerfish.toml")


def _tasks(root: Path) -> None:
    folder = root / "tasks"
    folder.mkdir(exist_ok=True)
    (folder / "__init__.py").touch()
    example = folder / "example.py"
    if example.exists():
        console.print("tasks        tasks/example.py exists: left as it is")
        return
    example.write_text(EXAMPLE)
    console.print("tasks        wrote tasks/example.py (task id: hello-world)")


def _dev_key(root: Path) -> str:
    """The dev server's key of this project, made now if `dev` has not made one."""
    from triggerfish.store.envs import generate_key

    path = root / STATE_DIR / DEV_KEY_FILE
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(exist_ok=True)
    key = generate_key("dev")
    path.touch(mode=0o600)
    path.write_text(key + "\n")
    return key


def _env_file(root: Path, api_url: str, key: str) -> None:
    env = root / ".env"
    lines = env.read_text().splitlines() if env.is_file() else []
    have = {line.split("=", 1)[0].strip() for line in lines if "=" in line}
    added = [
        f"{name}={value}"
        for name, value in (("TRIGGERFISH_API_URL", api_url), ("TRIGGERFISH_SECRET_KEY", key))
        if name not in have
    ]
    if not added:
        console.print(".env         has TRIGGERFISH_API_URL and TRIGGERFISH_SECRET_KEY: left as is")
        return
    header = [
        "# Triggerfish's local dev server (`triggerfish dev`). Only a DEV key belongs here:",
        "# put production keys in your deployment's secret store, never in a file.",
    ]
    text = "\n".join([*lines, *([""] if lines else []), *header, *added]) + "\n"
    env.write_text(text)
    env.chmod(0o600)
    console.print(
        ".env         wrote the dev server's URL and a [bold]dev[/] key (it holds only dev "
        "keys: keep production keys out of files)"
    )


def _gitignore(root: Path) -> None:
    path = root / ".gitignore"
    lines = path.read_text().splitlines() if path.is_file() else []
    missing = [p for p in (".env", f"{STATE_DIR}/") if p not in lines]
    if missing:
        path.write_text("\n".join([*lines, *missing]) + "\n")
        console.print(f".gitignore   added {', '.join(missing)}")


def _snippet(root: Path, app: App | None) -> None:
    if app is None:
        console.print(
            "app          no FastAPI, Flask or Django app found; trigger from Python with:"
        )
        console.print(PLAIN_SNIPPET, markup=False, highlight=False)
        return
    if app.framework == "django":
        console.print("app          Django project: add a view and a URL like these:")
        console.print(DJANGO_SNIPPET, markup=False, highlight=False)
        return
    text = app.path.read_text()
    where = app.path.relative_to(root)
    if MARK in text:
        console.print(f"app          {where} already triggers the example: left as it is")
        return
    template = FASTAPI_SNIPPET if app.framework == "fastapi" else FLASK_SNIPPET
    module = ".".join(where.with_suffix("").parts)
    snippet = template.format(mark=MARK, app=app.variable, module=module)
    app.path.write_text(text.rstrip("\n") + "\n" + snippet)
    route = "/hello/{who}" if app.framework == "fastapi" else "/hello/<who>"
    console.print(
        f"app          {_NAMES[app.framework]} app in {where}: added POST {route}, "
        "which triggers the example"
    )
