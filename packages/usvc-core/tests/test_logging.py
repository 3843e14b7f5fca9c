"""The one log pipeline: structlog and stdlib lines share a renderer (JSON or console)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
import uuid
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
import structlog
from usvc_core import logger
from usvc_core.logging import add_processor, configure_logging, remove_processor


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put logging back as it was after a test that configures it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


@pytest.mark.usefixtures("restore_logging")
def test_structlog_and_stdlib_lines_are_the_same_json() -> None:
    """Our lines and uvicorn/httpx/oracledb/pymongo lines come out as one JSON shape."""
    out = io.StringIO()
    configure_logging(json=True, stream=out)
    logger.info("Processing item", token="job-1", item_id=42)
    for name in ("uvicorn.error", "httpx", "oracledb", "pymongo.command"):
        logging.getLogger(name).warning("from %s", name)
    got = lines(out)
    assert got[0]["event"] == "Processing item"
    assert got[0]["token"] == "job-1"
    assert got[0]["item_id"] == 42
    assert [g["event"] for g in got[1:]] == [
        "from uvicorn.error",
        "from httpx",
        "from oracledb",
        "from pymongo.command",
    ]
    for g in got:
        assert {"event", "level", "logger", "timestamp"} <= set(g)
    assert got[1]["level"] == "warning"
    assert got[1]["logger"] == "uvicorn.error"


@pytest.mark.usefixtures("restore_logging")
def test_library_handlers_are_replaced_by_ours() -> None:
    """A library's own handler (as uvicorn's dictConfig installs) is removed: one line each."""
    uvicorn = logging.getLogger("uvicorn.access")
    stray = io.StringIO()
    uvicorn.addHandler(logging.StreamHandler(stray))
    uvicorn.propagate = False
    out = io.StringIO()
    configure_logging(json=True, stream=out)
    uvicorn.info("GET /health 200")
    assert stray.getvalue() == ""
    assert [g["event"] for g in lines(out)] == ["GET /health 200"]


@pytest.mark.usefixtures("restore_logging")
def test_console_renderer_for_humans() -> None:
    """json=False gives one readable line with key=value pairs and no colour codes."""
    out = io.StringIO()
    configure_logging(json=False, stream=out)
    logger.info("job done", token="tok-9")
    text = out.getvalue()
    assert "job done" in text
    assert "token=tok-9" in text
    assert "\x1b[" not in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("debug", [False, True])
def test_debug_switches_the_level(debug: bool) -> None:
    """DEBUG=True lets debug lines through; httpcore wire chatter stays hidden either way."""
    out = io.StringIO()
    configure_logging(json=True, stream=out, debug=debug)
    logger.debug("ours")
    logging.getLogger("somelib").debug("theirs")
    logging.getLogger("httpcore.http11").debug("send_request_headers")
    events = [g["event"] for g in lines(out)]
    assert events == (["ours", "theirs"] if debug else [])


@pytest.mark.usefixtures("restore_logging")
def test_exceptions_are_structured_in_json() -> None:
    """logger.exception inside except gives a structured traceback, not a text blob."""
    out = io.StringIO()
    configure_logging(json=True, stream=out)
    password = "hunter2-secret"  # a local of the failing frame
    try:
        int("bad value" if password else "")
    except ValueError:
        logger.exception("it broke", token="t")
    [line] = lines(out)
    assert line["level"] == "error"
    assert line["token"] == "t"
    assert line["exception"][0]["exc_type"] == "ValueError"
    assert "bad value" in line["exception"][0]["exc_value"]
    assert line["exception"][0]["frames"][-1]["name"] == "test_exceptions_are_structured_in_json"
    assert "hunter2-secret" not in out.getvalue()  # frames' locals are never logged


@pytest.mark.usefixtures("restore_logging")
def test_the_fast_json_line_matches_the_general_pipeline() -> None:
    """A plain kit line (the one per job) takes a one-call path; it writes what the full
    processor chain writes: same keys in the same order, same values, same JSON."""
    from usvc_core.logging import _Output

    out = io.StringIO()
    configure_logging(json=True, stream=out)
    structlog.contextvars.bind_contextvars(token="tok-1", job_id="7")
    try:
        for method in ("info", "warning", "warn", "error"):
            getattr(logger, method)("job completed", runtime_ms=0.5, odd=object(), n=None)
            _Output.json = False  # the general path renders the same event
            getattr(logger, method)("job completed", runtime_ms=0.5, odd=object(), n=None)
            _Output.json = True
    finally:
        structlog.contextvars.clear_contextvars()
    got = lines(out)
    assert len(got) == 8
    for fast, general in zip(got[::2], got[1::2], strict=True):
        assert list(fast) == list(general)
        for key in ("timestamp", "odd"):
            assert type(fast.pop(key)) is type(general.pop(key)) is str
        assert fast == general
    assert [line["level"] for line in got[::2]] == ["info", "warning", "warning", "error"]
    stamp = lines(out)[0]["timestamp"]
    assert stamp.endswith("Z") and len(stamp) == len("2026-11-28T08:03:59.259235Z")


_CONSOLE_CASES: list[dict[str, Any]] = [
    {"event": "job completed", "runtime_ms": 0.012, "token": "t-1", "job_id": "dev-7"},
    {"event": "a much longer event than thirty characters", "b": None, "a": [1, "x y"]},
    {"event": "quoted", "s": "has space", "q": 'it"s', "e": "a=b", "n": "new\nline"},
    {"event": 42, "empty": "", "tab": "\t", "d": {"k": "v"}, "f": float("nan")},
    {"event": "", "timestamp": "", "level": "critical", "logger": ""},
    {"event": "no logger", "level": "warning"},
    {"event": "odd level", "level": "a-level-longer-than-nine"},
    {"event": "no timestamp", "timestamp": None, "x": object},
]


@pytest.mark.parametrize("event_dict", _CONSOLE_CASES)
def test_the_fast_console_line_is_what_console_renderer_writes(
    event_dict: dict[str, Any],
) -> None:
    """The console line per job skips structlog's ConsoleRenderer; it writes the same text."""
    from usvc_core.logging import _console_line

    full = {"timestamp": "2026-12-06T07:00:00.123456Z", "level": "info", "logger": "usvc"}
    full.update(event_dict)
    renderer = structlog.dev.ConsoleRenderer(colors=False)
    assert _console_line(None, "info", dict(full)) == renderer(None, "info", dict(full))


@pytest.mark.parametrize("event_dict", _CONSOLE_CASES)
@pytest.mark.parametrize("level", ["debug", "info", "warning", "error", "critical"])
def test_the_kits_console_line_is_what_console_renderer_writes(
    event_dict: dict[str, Any], level: str
) -> None:
    """The kit's own console line (level, logger name and timestamp never put in the event)
    writes what the renderer writes for the event with them; an event without an "event"
    or with one of those keys of its own is left to _console_line (None)."""
    from usvc_core.logging import _console_job_line, _LineWriter

    writer = _LineWriter("usvc.worker")
    line = _console_job_line(writer, dict(event_dict), level)
    if "event" not in event_dict or {"timestamp", "level", "logger"} & event_dict.keys():
        assert line is None
        return
    assert line is not None
    timestamp, rest = line.split(" ", 1)
    assert len(timestamp) == len("2026-11-28T08:03:59.259235Z")
    full = {**event_dict, "timestamp": timestamp, "level": level, "logger": "usvc.worker"}
    assert line == structlog.dev.ConsoleRenderer(colors=False)(None, level, full)


@pytest.mark.usefixtures("restore_logging")
def test_the_fast_console_line_matches_the_general_pipeline() -> None:
    """Through the whole pipeline too: context, level names, logger name; a line with a
    traceback still takes the renderer (and gets its traceback)."""
    from usvc_core.logging import _Output

    out = io.StringIO()
    configure_logging(json=False, stream=out)
    structlog.contextvars.bind_contextvars(token="tok 1", job_id="7")
    try:
        for method in ("info", "warning", "warn", "error"):
            getattr(logger, method)("job completed", runtime_ms=0.5, odd=object, n=None)
            _Output.console_fast = False
            getattr(logger, method)("job completed", runtime_ms=0.5, odd=object, n=None)
            _Output.console_fast = True
        try:
            int("boom")
        except ValueError:
            logger.exception("it broke")
    finally:
        structlog.contextvars.clear_contextvars()
    got = out.getvalue().splitlines()
    # Each line starts with its own timestamp (same width, different microseconds).
    for fast, general in zip(got[0:8:2], got[1:8:2], strict=True):
        assert fast.split(" ", 1)[1] == general.split(" ", 1)[1]
        assert len(fast.split(" ", 1)[0]) == len("2026-11-28T08:03:59.259235Z")
    assert "[warning  ] job completed" in got[2]
    assert "token='tok 1'" in got[0]
    assert "it broke" in got[8] and "ValueError: invalid literal" in out.getvalue()


@pytest.mark.usefixtures("restore_logging")
def test_added_processors_see_every_line_until_removed() -> None:
    """add_processor works after configure and for cached loggers; remove_processor stops it."""
    out = io.StringIO()
    configure_logging(json=True, stream=out)
    logger.info("warm the cache")  # the logger is now cached with the configured chain
    seen: list[tuple[str, Any]] = []

    def spy(_l: Any, _m: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        seen.append((event_dict["event"], event_dict.get("token")))
        event_dict["spied"] = True
        return event_dict

    add_processor(spy)
    try:
        with structlog.contextvars.bound_contextvars(token="tok-1"):
            logger.info("structlog line")
            logging.getLogger("somelib").info("stdlib line")
    finally:
        remove_processor(spy)
    logger.info("after removal")
    assert seen == [("structlog line", "tok-1"), ("stdlib line", "tok-1")]
    assert [g.get("spied", False) for g in lines(out)] == [False, True, True, False]
    remove_processor(spy)  # removing twice is harmless


class _Flushes(io.StringIO):
    """A stream that counts its flushes and what had been written at each."""

    def __init__(self) -> None:
        super().__init__()
        self.flushed: list[int] = []  # the number of lines written at each flush

    def flush(self) -> None:
        self.flushed.append(self.getvalue().count("\n"))
        super().flush()


@pytest.mark.usefixtures("restore_logging")
async def test_lines_of_a_loop_turn_share_one_flush_by_the_next_turn() -> None:
    """INFO lines written in one turn of the event loop are flushed together, before the
    next turn's work; the write is one line per call, so nothing else changes."""
    out = _Flushes()
    configure_logging(json=True, stream=out)
    for n in range(5):
        logger.info("job completed", n=n)
    assert out.flushed == []
    await asyncio.sleep(0)
    assert out.flushed == [5]
    logger.info("job completed", n=5)
    await asyncio.sleep(0)
    assert out.flushed == [5, 6]
    assert [line["n"] for line in lines(out)] == list(range(6))


@pytest.mark.usefixtures("restore_logging")
async def test_warnings_and_lines_without_a_loop_are_flushed_at_once() -> None:
    """WARNING and above, lines from a thread with no running loop, and stdlib records
    flush at once; a stdlib record never overtakes a kit line logged before it."""
    out = _Flushes()
    configure_logging(json=True, stream=out)
    logger.info("first")
    logger.warning("second")
    assert out.flushed == [2]
    thread = threading.Thread(target=logger.info, args=("third",))
    thread.start()
    thread.join()  # the loop turns no more meanwhile: this flush is the thread's own
    assert out.flushed == [2, 3]
    logger.info("fourth")
    logging.getLogger("uvicorn.error").info("fifth")
    assert out.flushed[-1] == 5
    assert [line["event"] for line in lines(out)] == ["first", "second", "third", "fourth", "fifth"]
    await asyncio.sleep(0)


@pytest.mark.usefixtures("restore_logging")
async def test_closing_or_replacing_the_handler_flushes_the_turns_lines(tmp_path: Path) -> None:
    """Lines still in a buffered file stream's buffer reach the file when the handler is
    closed (``logging.shutdown`` closes it at exit) or logging is configured again."""
    for end in ("close", "reconfigure"):
        path = tmp_path / f"{end}.log"
        with path.open("w") as stream:
            configure_logging(json=True, stream=stream)
            logger.info("buffered", end=end)
            assert path.read_text() == ""  # in the buffer, not flushed yet
            if end == "close":
                logging.getLogger().handlers[0].close()
            else:
                configure_logging(json=True, stream=io.StringIO())
            assert json.loads(path.read_text())["end"] == end


@pytest.mark.usefixtures("restore_logging")
def test_context_keys_come_in_one_order_on_every_path() -> None:
    """The kit's fast line, its general chain and a stdlib record merge the bound context
    the same way: the keys in the order they were first bound, a cleared key left out, the
    event's own value first; a key first bound late (in a handler) still appears."""
    from usvc_core.logging import _Output

    out = io.StringIO()
    configure_logging(json=True, stream=out)
    structlog.contextvars.bind_contextvars(zeta="z", alpha="a", mid="m")
    try:
        structlog.contextvars.unbind_contextvars("mid")  # bound to ... : cleared
        structlog.contextvars.bind_contextvars(late_key_from_a_handler=1)
        logger.info("fast", zeta="mine")
        _Output.json = False  # the general chain, rendered as JSON all the same
        logger.info("general", zeta="mine")
        _Output.json = True
        logging.getLogger("somelib").info("stdlib")
    finally:
        structlog.contextvars.clear_contextvars()
    logger.info("after clear")
    got = lines(out)
    context = ["alpha", "late_key_from_a_handler", "level", "logger", "timestamp"]
    keys = ["zeta", "event", *context]  # structlog's: the keywords, then the event
    assert [list(g) for g in got[:2]] == [keys, keys]
    assert list(got[2]) == ["event", "zeta", *context]
    assert [g["zeta"] for g in got[:3]] == ["mine", "mine", "z"]
    assert list(got[3]) == ["event", "level", "logger", "timestamp"]


@pytest.mark.parametrize("registry", [True, False])
def test_the_context_merge_is_merge_contextvars_up_to_order(
    registry: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same keys and values as structlog's merge_contextvars, in any context; a structlog
    without the registry of its variables gets merge_contextvars itself."""
    from usvc_core import logging as kit_logging
    from usvc_core.logging import _merge_context

    if not registry:
        monkeypatch.setattr(kit_logging, "_STRUCTLOG_VARS", None)

    def both(event: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        ours = _merge_context(None, "info", dict(event))
        theirs = structlog.contextvars.merge_contextvars(None, "info", dict(event))
        return dict(ours), dict(theirs)

    ours, theirs = both({"event": "e"})
    assert ours == theirs
    structlog.contextvars.bind_contextvars(a=1, b=None, c="x")
    try:
        structlog.contextvars.unbind_contextvars("b")
        ours, theirs = both({"event": "e", "c": "kept"})
        assert ours == theirs == {"event": "e", "c": "kept", "a": 1}
        for event in [{}, {"a": 2}]:
            ours, theirs = both(event)
            assert ours == theirs
            assert list(ours)[: len(event)] == list(event)
    finally:
        structlog.contextvars.clear_contextvars()
    ours, theirs = both({"event": "e"})
    assert ours == theirs == {"event": "e"}
    fresh = f"first_bound_now_{uuid.uuid4().hex}"  # the registry grows after a merge
    structlog.contextvars.bind_contextvars(**{fresh: 1})
    try:
        ours, theirs = both({"event": "e"})
        assert ours == theirs == {"event": "e", fresh: 1}
    finally:
        structlog.contextvars.clear_contextvars()


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("json_lines", [True, False])
def test_log_info_writes_what_logger_info_writes(json_lines: bool) -> None:
    """The worker's direct call into the pipeline writes the line ``log.info`` writes."""
    from usvc_core.logging import log_info

    out = io.StringIO()
    configure_logging(json=json_lines, stream=out)
    log = structlog.get_logger("usvc.worker")
    structlog.contextvars.bind_contextvars(token="tok-1", job_id="7", action="noop")
    try:
        for _ in range(2):  # the proxy's first use, then its cached logger
            log_info(log, "job completed", runtime_ms=0.5)
            log.info("job completed", runtime_ms=0.5)
        log_info(log.bind(), "job completed", runtime_ms=0.5)  # a bound logger
        log.info("job completed", runtime_ms=0.5)
    finally:
        structlog.contextvars.clear_contextvars()
    got = out.getvalue().splitlines()
    assert len(got) == 6
    for direct, general in zip(got[::2], got[1::2], strict=True):
        if json_lines:
            direct_line, general_line = json.loads(direct), json.loads(general)
            assert list(direct_line) == list(general_line)
            assert direct_line.pop("timestamp") and general_line.pop("timestamp")
            assert direct_line == general_line
            assert direct_line["logger"] == "usvc.worker"
        else:
            assert direct.split(" ", 1)[1] == general.split(" ", 1)[1]


@pytest.mark.usefixtures("restore_logging")
def test_log_info_follows_a_configuration_made_after_the_kits() -> None:
    """A user's structlog.configure after configure_logging, a logger with bound context
    or a level filter of the user's: log_info takes log.info, so they all apply."""
    from usvc_core.logging import log_info

    configure_logging(json=True, stream=io.StringIO())
    seen: list[dict[str, Any]] = []

    def capture(_l: Any, _m: str, event_dict: MutableMapping[str, Any]) -> str:
        seen.append(dict(event_dict))
        return "captured"

    structlog.configure(processors=[capture], logger_factory=structlog.ReturnLoggerFactory())
    log = structlog.get_logger("usvc.worker")
    log_info(log, "job completed", runtime_ms=0.5)
    log_info(log.bind(job="x"), "job completed", runtime_ms=0.5)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    log_info(structlog.get_logger("usvc.worker"), "filtered out", runtime_ms=0.5)
    assert seen == [
        {"runtime_ms": 0.5, "event": "job completed"},
        {"job": "x", "runtime_ms": 0.5, "event": "job completed"},
    ]
