"""Any number of named environments, each with its own keys (on both stores)."""

from __future__ import annotations

import pytest

from triggerfish.engine import Engine
from triggerfish.errors import ConflictError, UserError


async def test_environments_are_created_listed_and_keyed(engine: Engine) -> None:
    made = await engine.environments.create("eu-staging-2")
    assert made.slug == "eu-staging-2"
    key, _ = await engine.environments.create_key("eu-staging-2", "ci")
    assert key.startswith("tr_eu-staging-2_")
    assert (await engine.environments.authenticate(key)).id == made.id
    counts = {env.slug: keys for env, keys in await engine.environments.all()}
    assert counts["eu-staging-2"] == 1 and {"dev", "prod"} <= set(counts)
    with pytest.raises(ConflictError, match="exists"):
        await engine.environments.create("eu-staging-2")


async def test_an_environment_name_is_lowercase_letters_digits_and_dashes(
    engine: Engine,
) -> None:
    for slug in ["Staging", "a_b", "", "x" * 33, "with space"]:
        with pytest.raises(UserError, match=r"\[a-z0-9-\]\+"):
            await engine.environments.create(slug)


async def test_an_unknown_environment_names_the_known_ones_and_the_fix(engine: Engine) -> None:
    with pytest.raises(UserError, match=r"known: dev, prod.*environments create qa"):
        await engine.environments.create_key("qa", "x")
