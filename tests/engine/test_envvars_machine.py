"""Environment variables under random sets, creates, updates, deletes, uploads and
keyring rotations, from two servers of one store: what the API lists and what an
attempt is given always equal a plain dict kept beside them, and no value is
stored in the clear."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule
from sqlalchemy import select

from tests.support.machines import StoreMachine, run_machine_on
from triggerfish.config import ServerSettings
from triggerfish.engine import Engine
from triggerfish.engine.keyring import Keyring, generate_secret
from triggerfish.engine.resources import ManualClock
from triggerfish.errors import EnvVarNotFound, UserError
from triggerfish.store.tables import env_vars

NAMES = st.sampled_from(["A", "B", "API_URL", "_x1"])
VALUES = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)

SETTINGS = settings(
    max_examples=10,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class EnvVarsMachine(StoreMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(1_000_000.0)
        self.secrets = [generate_secret()]
        make = ServerSettings(database_url=self.db_url)
        self.engines = [Engine.create(make, clock=self.clock) for _ in range(2)]
        for engine in self.engines:
            engine.res.keyring = Keyring(self.secrets)
            self.run(engine.start(background=False))
        self.run(self.engines[0].environments.bootstrap())
        self.env = self.run(self.engines[0].environments.by_slug("dev"))
        self.model: dict[str, tuple[str, bool]] = {}

    def teardown(self) -> None:
        for engine in self.engines:
            self.run(engine.close())
        self.release_store()

    @rule(server=st.integers(0, 1), name=NAMES, value=VALUES, secret=st.booleans())
    def set(self, server: int, name: str, value: str, secret: bool) -> None:
        ev = self.engines[server].envvars
        self.run(ev.create(self.env.id, name, value, secret=secret, replace=True))
        self.model[name] = (value, secret)

    @rule(server=st.integers(0, 1), name=NAMES, value=VALUES)
    def create(self, server: int, name: str, value: str) -> None:
        ev = self.engines[server].envvars
        try:
            self.run(ev.create(self.env.id, name, value))
        except UserError:
            assert name in self.model
            return
        assert name not in self.model
        self.model[name] = (value, False)

    @rule(server=st.integers(0, 1), name=NAMES, value=VALUES)
    def update(self, server: int, name: str, value: str) -> None:
        ev = self.engines[server].envvars
        try:
            self.run(ev.update(self.env.id, "dev", name, value))
        except EnvVarNotFound:
            assert name not in self.model
            return
        self.model[name] = (value, self.model[name][1])

    @rule(server=st.integers(0, 1), name=NAMES)
    def delete(self, server: int, name: str) -> None:
        ev = self.engines[server].envvars
        try:
            self.run(ev.delete(self.env.id, "dev", name))
        except EnvVarNotFound:
            assert name not in self.model
            return
        del self.model[name]

    @rule(
        server=st.integers(0, 1),
        variables=st.dictionaries(NAMES, VALUES, max_size=3),
        override=st.booleans(),
        secret=st.booleans(),
    )
    def upload(self, server: int, variables: dict[str, str], override: bool, secret: bool) -> None:
        ev = self.engines[server].envvars
        written, kept = self.run(
            ev.upload(self.env.id, variables, override=override, secret=secret)
        )
        for name, value in variables.items():
            if name in self.model and not override:
                assert name in kept
            else:
                assert name in written
                self.model[name] = (value, secret)

    @rule()
    def rotate_the_server_secret(self) -> None:
        """A new secret seals from now on; values sealed before still open."""
        self.secrets = [generate_secret(), *self.secrets]
        for engine in self.engines:
            engine.res.keyring = Keyring(self.secrets)
            engine.envvars._opened.clear()

    @invariant()
    def every_server_sees_the_model(self) -> None:
        expected = {name: value for name, (value, _) in self.model.items()}
        for engine in self.engines:
            listed = self.run(engine.envvars.all(self.env.id))
            assert {v.name: (v.value, v.is_secret) for v in listed} == self.model
            assert self.run(engine.envvars.for_attempts(self.env.id)) == expected

    @invariant()
    def nothing_is_stored_in_the_clear(self) -> None:
        async def boxes() -> list[str]:
            async with self.engines[0].res.db.read() as conn:
                return [r.value_box for r in await conn.execute(select(env_vars))]

        for box in self.run(boxes()):
            assert box.startswith("v1.")
            for value, _ in self.model.values():
                if len(value) >= 4:
                    assert value not in box


def test_envvars_sqlite() -> None:
    run_machine_on(EnvVarsMachine, "sqlite", SETTINGS)


def test_envvars_postgresql(pg_template: str) -> None:
    run_machine_on(EnvVarsMachine, "postgresql", SETTINGS, pg_template)
