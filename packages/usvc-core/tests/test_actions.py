"""@action: reading type hints, options, and the errors that fail startup."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from usvc_core import (
    ActionDefinitionError,
    ActionDiscoveryError,
    ActionRegistry,
    JobContext,
    ServiceContainer,
    ServiceNotFoundError,
    ServiceProvider,
    action,
)
from usvc_core.actions import discover_actions, resolve_actions_dir
from usvc_core.health import HealthRegistry


class In(BaseModel):
    name: str


class Out(BaseModel):
    message: str


class Llm(ServiceProvider):
    name = "llm"


@action("full")
async def full(input: In, llm: Llm, job: JobContext) -> Out:
    return Out(message=input.name)


class TestDefinition:
    def test_parameters_are_sorted_by_role(self) -> None:
        """Input model, services and the job context are read from the hints."""
        reg = ActionRegistry()
        d = reg.add(full)
        assert (d.input_param, d.input_model, d.output_model) == ("input", In, Out)
        assert d.service_params == {"llm": Llm}
        assert d.context_param == "job"
        assert d.source.endswith("test_actions.py:" + d.source.rsplit(":", 1)[1])
        assert reg.names == ["full"] and "full" in reg and len(reg) == 1

    def test_schema_comes_from_the_models(self) -> None:
        """The registry record holds the input and output JSON Schemas."""
        schema = ActionRegistry().add(full).schema()
        assert schema.name == "full"
        assert schema.input_schema["properties"]["name"]["type"] == "string"
        assert schema.output_schema is not None
        assert "message" in schema.output_schema["properties"]

    def test_handler_without_input_is_allowed(self) -> None:
        """A handler may take no input model at all."""

        @action("ping")
        async def ping() -> dict[str, Any]:
            return {}

        d = ActionRegistry().add(ping)
        assert d.input_model is None
        assert d.schema().input_schema == {"type": "object"}
        assert d.schema().output_schema is None

    def test_options_are_kept(self) -> None:
        """Timeout, attempts and retryable exceptions travel with the handler."""

        @action("slow", timeout_seconds=2.5, max_attempts=7, retry_on=(ConnectionError,))
        async def slow(input: In) -> None:
            return None

        opts = ActionRegistry().add(slow).options
        assert (opts.timeout_seconds, opts.max_attempts, opts.retry_on) == (
            2.5,
            7,
            (ConnectionError,),
        )


class TestStartupErrors:
    def test_sync_handler_names_file(self) -> None:
        """A plain def is refused with its file and line."""
        with pytest.raises(
            ActionDefinitionError, match=r"test_actions\.py:\d+\) must be 'async def'"
        ):

            @action("sync")
            def sync(input: In) -> None:  # type: ignore[type-var]
                return None

    def test_duplicate_name_names_both_files(self) -> None:
        """Two handlers for one action fail with both locations."""

        @action("dup")
        async def one() -> None:
            return None

        @action("dup")
        async def two() -> None:
            return None

        reg = ActionRegistry()
        reg.add(one)
        with pytest.raises(
            ActionDefinitionError, match=r"defined twice: .*test_actions.py:\d+ and"
        ):
            reg.add(two)

    def test_unresolvable_type_names_parameter(self) -> None:
        """A parameter whose type is neither input, service nor context is named."""

        @action("bad")
        async def bad(input: In, count: int) -> None:
            return None

        with pytest.raises(
            ActionDefinitionError, match=r"parameter 'count' has type <class 'int'>"
        ):
            ActionRegistry().add(bad)

    def test_missing_hint_names_parameter(self) -> None:
        """An unannotated parameter is refused."""

        @action("nohint")
        async def nohint(thing) -> None:  # type: ignore[no-untyped-def]
            return None

        with pytest.raises(ActionDefinitionError, match="parameter 'thing' has no type hint"):
            ActionRegistry().add(nohint)

    def test_forward_ref_that_does_not_resolve(self) -> None:
        """A hint naming an unknown type fails with the handler's location."""

        @action("fwd")
        async def fwd(input: NoSuchModel) -> None:  # type: ignore[name-defined]  # noqa: F821
            return None

        with pytest.raises(ActionDefinitionError, match="cannot resolve its type hints"):
            ActionRegistry().add(fwd)

    def test_two_input_models_refused(self) -> None:
        """A handler takes exactly one input model."""

        @action("two")
        async def two(a: In, b: Out) -> None:
            return None

        with pytest.raises(ActionDefinitionError, match="both BaseModel inputs"):
            ActionRegistry().add(two)

    def test_bad_options(self) -> None:
        """Nonsense options fail at decoration time."""
        with pytest.raises(ActionDefinitionError):
            action("")
        with pytest.raises(ActionDefinitionError):
            action("x", timeout_seconds=0)
        with pytest.raises(ActionDefinitionError):
            action("x", max_attempts=0)

    def test_not_an_action(self) -> None:
        """Registering an undecorated function is refused."""

        async def plain() -> None:
            return None

        with pytest.raises(ActionDefinitionError, match="is not an @action"):
            ActionRegistry().add(plain)

    def test_unregistered_service_fails_startup(self) -> None:
        """A handler asking for a service nobody registered fails the check, not the job."""
        reg = ActionRegistry()
        reg.add(full)
        container = ServiceContainer(HealthRegistry())
        with pytest.raises(ServiceNotFoundError, match=r"parameter 'llm'.*register_service\(Llm\)"):
            reg.check_services(container)
        container.register(Llm)
        reg.check_services(container)


class TestDiscovery:
    def write(self, root: Path, name: str, body: str) -> None:
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "handler.py").write_text(body)

    def test_finds_handlers_without_touching_sys_path(self, tmp_path: Path) -> None:
        """Every */handler.py is imported; sys.path is unchanged; relative imports work."""
        import sys

        self.write(
            tmp_path,
            "alpha",
            "from usvc_core import action\n\n@action('a')\nasync def h():\n    return {}\n",
        )
        (tmp_path / "beta").mkdir()
        (tmp_path / "beta" / "models.py").write_text("VALUE = 41\n")
        self.write(
            tmp_path,
            "beta",
            "from usvc_core import action\nfrom .models import VALUE\n\n"
            "@action('b')\nasync def h():\n    return {'v': VALUE + 1}\n",
        )
        (tmp_path / "no_handler").mkdir()
        before = list(sys.path)
        found = discover_actions(tmp_path)
        assert sys.path == before
        assert sorted(f.__usvc_action__.name for f in found) == ["a", "b"]  # type: ignore[attr-defined]

    def test_import_error_names_file(self, tmp_path: Path) -> None:
        """A handler that fails to import is reported with its path."""
        self.write(tmp_path, "broken", "import does_not_exist_anywhere\n")
        with pytest.raises(
            ActionDiscoveryError, match=r"broken/handler.py failed: ModuleNotFoundError"
        ):
            discover_actions(tmp_path)

    def test_definition_error_passes_through(self, tmp_path: Path) -> None:
        """A sync handler in a discovered file fails with the definition error itself."""
        self.write(
            tmp_path, "syncy", "from usvc_core import action\n\n@action('s')\ndef h():\n    pass\n"
        )
        with pytest.raises(ActionDefinitionError, match="must be 'async def'"):
            discover_actions(tmp_path)

    def test_bad_directory_name(self, tmp_path: Path) -> None:
        """Directory names must be identifiers, so the module can have a name."""
        self.write(tmp_path, "not-valid", "")
        with pytest.raises(ActionDiscoveryError, match="valid Python identifier"):
            discover_actions(tmp_path)

    def test_resolve_dir(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """The default dir may be absent; an explicit missing dir is an error."""
        monkeypatch.chdir(tmp_path)
        assert resolve_actions_dir(None) is None
        (tmp_path / "src" / "actions").mkdir(parents=True)
        assert resolve_actions_dir(None) == (tmp_path / "src" / "actions").resolve()
        with pytest.raises(ActionDiscoveryError, match="is not a directory"):
            resolve_actions_dir("nowhere")
