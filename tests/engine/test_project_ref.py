"""The project ref: the project's id unless ``TRIGGER_PROJECT_REF`` names it."""

from __future__ import annotations

import pytest

from tests import support
from triggerfish.engine.resources import ManualClock
from triggerfish.errors import UserError


async def test_the_project_ref_is_the_configured_one_and_can_change(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with support.started_engine(db_url, ManualClock()) as engine:
        first = await engine.environments.bootstrap()
        assert first.startswith("proj_")
        monkeypatch.setattr(engine.res.settings, "project_ref", "proj_chosenbyuser")
        assert await engine.environments.bootstrap() == "proj_chosenbyuser"
        assert (await engine.environments.by_slug("dev")).project_ref == "proj_chosenbyuser"
        monkeypatch.setattr(engine.res.settings, "project_ref", "no spaces/slashes")
        with pytest.raises(UserError, match="TRIGGER_PROJECT_REF"):
            await engine.environments.bootstrap()


def test_the_settings_read_trigger_project_ref(monkeypatch: pytest.MonkeyPatch) -> None:
    from triggerfish.config import ServerSettings

    monkeypatch.setenv("TRIGGER_PROJECT_REF", "proj_fromenv")
    assert ServerSettings().project_ref == "proj_fromenv"
