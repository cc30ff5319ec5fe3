"""Every setting of both services is declared once and has a flag, an environment variable, a
valid default and a row in the documentation's tables; the parsers' errors are one line naming
the variable. Pure: no server, no process."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

import meshchat_auth.__main__
import meshchat_auth.config
import meshchat_chat.__main__
import meshchat_chat.config
from meshchat_auth.config import Argon2Parameters, TokenPolicy
from meshchat_chat.config import AuthzMode
from meshchat_runtime.settings import (
    DATABASE_URL,
    ConfigError,
    HostPort,
    Setting,
    choice,
    duration,
    env_var,
    integer,
    parse_bool,
    parse_database_url,
    parse_duration,
    parse_host_port,
    parse_int,
    parse_log_level,
    parse_optional_host_port,
    parse_path,
    parse_settings,
    parse_text,
)

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "services"
DOCUMENTATION = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))


@dataclass(frozen=True)
class Service:
    """A service's table of settings, its serve command and the package that declares them."""

    package: str
    settings: tuple[Setting[object], ...]
    serve: click.Command

    def __str__(self) -> str:
        return self.package


SERVICES_UNDER_TEST = [
    Service(
        "meshchat_auth",
        meshchat_auth.config.SETTINGS,
        meshchat_auth.__main__.serve,
    ),
    Service(
        "meshchat_chat",
        meshchat_chat.config.SETTINGS,
        meshchat_chat.__main__.serve,
    ),
]
each_service = pytest.mark.parametrize("service", SERVICES_UNDER_TEST, ids=str)


def declared_names(*packages: str) -> list[str]:
    """The names of the ``Setting("name", ...)`` declarations in these packages' sources."""
    names = []
    for package in packages:
        for path in (SERVICES / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id == "Setting"
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)
                ):
                    names.append(node.args[0].value)
    return names


@each_service
def test_each_setting_is_declared_exactly_once(service: Service) -> None:
    names = [setting.name for setting in service.settings]
    assert len(names) == len(set(names)), names
    declared = declared_names("meshchat_runtime", service.package)
    for name in names:
        assert declared.count(name) == 1, (name, declared.count(name))


@each_service
def test_each_setting_is_a_flag_with_its_environment_variable(service: Service) -> None:
    options = {
        param.name: param for param in service.serve.params if isinstance(param, click.Option)
    }
    file_keys = {setting.file_key for setting in service.settings if setting.secret}
    assert set(options) == {setting.key for setting in service.settings} | file_keys
    for setting in service.settings:
        option = options[setting.key]
        assert f"--{setting.name}" in option.opts
        assert option.envvar == setting.env
        assert setting.env == "MESHCHAT_" + setting.key.upper()
        if setting.secret:
            file_option = options[setting.file_key]
            assert file_option.opts == [f"--{setting.name}-file"]
            assert file_option.envvar == setting.env + "_FILE"


@each_service
def test_the_database_url_is_a_secret_that_may_come_from_a_file(service: Service) -> None:
    assert [setting.name for setting in service.settings if setting.secret] == ["database-url"]


@each_service
def test_each_default_is_a_valid_value(service: Service) -> None:
    values = parse_settings(service.settings, {s.key: s.default_text for s in service.settings})
    for setting in service.settings:
        assert values[setting] == setting.default_value


@each_service
def test_each_setting_is_in_a_table_of_the_documentation(service: Service) -> None:
    rows = [
        line
        for page in DOCUMENTATION
        for line in page.read_text().splitlines()
        if line.startswith("|")
    ]
    variables = [setting.env for setting in service.settings]
    variables += [setting.file_env for setting in service.settings if setting.secret]
    for env in variables:
        variable = re.compile(rf"\b{env}\b")
        assert any(variable.search(row) for row in rows), f"{env} is in no table row"


SERVICE_MODULES = sorted(
    str(path.relative_to(SERVICES))
    for package in ("meshchat_runtime", "meshchat_auth", "meshchat_chat")
    for path in (SERVICES / package).rglob("*.py")
)


@pytest.mark.parametrize("module", SERVICE_MODULES)
def test_no_environment_variable_is_written_out(module: str) -> None:
    """Each variable comes from its setting's name, never from a string literal (docstrings
    aside)."""
    tree = ast.parse((SERVICES / module).read_text())
    docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    literals = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and re.search(r"\bMESHCHAT_[A-Z]", node.value)
    ]
    assert literals == []


# --- the parsers --------------------------------------------------------------------------------


def error(parse: Callable[[], object]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse()
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_an_environment_variable_is_the_name_in_upper_snake_case() -> None:
    assert env_var("max-connection-age") == "MESHCHAT_MAX_CONNECTION_AGE"


@pytest.mark.parametrize(
    ("text", "minimum", "maximum", "message"),
    [
        ("many", None, None, "MESHCHAT_X: expected a whole number, got 'many'"),
        ("1.5", None, None, "MESHCHAT_X: expected a whole number, got '1.5'"),
        ("0", 1, None, "MESHCHAT_X: must be at least 1"),
        ("11", None, 10, "MESHCHAT_X: must be at most 10"),
        ("0", 1, 10, "MESHCHAT_X: must be 1 to 10"),
        ("11", 1, 10, "MESHCHAT_X: must be 1 to 10"),
    ],
)
def test_parse_int_errors(
    text: str, minimum: int | None, maximum: int | None, message: str
) -> None:
    assert error(lambda: parse_int(text, "MESHCHAT_X", minimum, maximum)) == message


def test_parse_int_accepts_the_bounds() -> None:
    assert parse_int(" 10 ", "MESHCHAT_X", 1, 10) == 10
    assert integer(minimum=1)("1", "MESHCHAT_X") == 1


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("300", 300.0),
        ("1.5s", 1.5),
        ("250ms", 0.25),
        ("5m", 300.0),
        ("4H", 14400.0),
        ("30d", 2592000.0),
    ],
)
def test_parse_duration_units(text: str, seconds: float) -> None:
    assert parse_duration(text, "MESHCHAT_X") == seconds


@pytest.mark.parametrize(
    ("parse", "message"),
    [
        (
            lambda: parse_duration("soon", "MESHCHAT_X"),
            "MESHCHAT_X: expected seconds or a duration like 30s, 5m, 30d; got 'soon'",
        ),
        (
            lambda: parse_duration("-5s", "MESHCHAT_X"),
            "MESHCHAT_X: must not be negative, got '-5s'",
        ),
        (
            lambda: parse_duration("nan", "MESHCHAT_X"),
            "MESHCHAT_X: must not be negative, got 'nan'",
        ),
        (
            lambda: duration(minimum=10)("9s", "MESHCHAT_X"),
            "MESHCHAT_X: must be at least 10 seconds",
        ),
        (lambda: duration(positive=True)("0s", "MESHCHAT_X"), "MESHCHAT_X: must be positive"),
    ],
)
def test_parse_duration_errors(parse: Callable[[], object], message: str) -> None:
    assert error(parse) == message


def test_parse_host_port() -> None:
    assert parse_host_port("[::1]:50051", "MESHCHAT_X") == HostPort("::1", 50051)
    assert str(parse_host_port("[::1]:0", "MESHCHAT_X")) == "[::1]:0"
    assert error(lambda: parse_host_port("no-port", "MESHCHAT_X")) == (
        "MESHCHAT_X: expected HOST:PORT, got 'no-port'"
    )
    assert error(lambda: parse_host_port("h:99999", "MESHCHAT_X")) == (
        "MESHCHAT_X: port must be 0 to 65535, got '99999'"
    )
    assert error(lambda: parse_host_port("auth:http", "MESHCHAT_X")).startswith("MESHCHAT_X: port")


def test_an_optional_address_may_be_off() -> None:
    assert parse_optional_host_port("off", "MESHCHAT_X") is None
    assert parse_optional_host_port("OFF", "MESHCHAT_X") is None
    assert parse_optional_host_port("127.0.0.1:9101", "MESHCHAT_X") == HostPort("127.0.0.1", 9101)


def test_parse_database_url() -> None:
    sqlite = parse_database_url("sqlite:///data/chat.db")
    assert (sqlite.dialect, sqlite.sqlite_path) == ("sqlite", Path("data/chat.db"))
    assert parse_database_url("sqlite:////abs/chat.db").sqlite_path == Path("/abs/chat.db")
    postgres = parse_database_url("postgresql://u:secret@db/chat")
    assert (postgres.dialect, postgres.redacted) == ("postgresql", "postgresql://u:***@db/chat")
    assert error(lambda: parse_database_url("mysql://db/chat")) == (
        "MESHCHAT_DATABASE_URL: expected sqlite:///path or postgresql://user@host/db, "
        "got 'mysql://db/chat'"
    )
    assert error(lambda: parse_database_url("sqlite://host/x.db")).startswith(
        "MESHCHAT_DATABASE_URL: write sqlite:///path/to/file.db"
    )
    assert error(lambda: parse_database_url("sqlite:///")) == (
        "MESHCHAT_DATABASE_URL: the sqlite URL names no file"
    )
    assert error(lambda: parse_database_url("postgresql:///chat")) == (
        "MESHCHAT_DATABASE_URL: the postgresql URL names no host"
    )


def test_choices() -> None:
    assert parse_log_level("WARNING", "MESHCHAT_LOG_LEVEL") == "warning"
    assert error(lambda: parse_log_level("loud", "MESHCHAT_LOG_LEVEL")) == (
        "MESHCHAT_LOG_LEVEL: expected one of debug, info, warning, error, got 'loud'"
    )
    assert choice(AuthzMode)(" Remote ", "MESHCHAT_AUTHZ_MODE") is AuthzMode.REMOTE
    assert error(lambda: choice(AuthzMode)("sometimes", "MESHCHAT_AUTHZ_MODE")) == (
        "MESHCHAT_AUTHZ_MODE: expected one of local, remote, got 'sometimes'"
    )


@pytest.mark.parametrize(
    ("text", "value"), [("true", True), ("Off", False), ("1", True), ("no", False)]
)
def test_parse_bool(text: str, value: bool) -> None:
    assert parse_bool(text, "MESHCHAT_X") is value


def test_parse_bool_errors() -> None:
    assert error(lambda: parse_bool("maybe", "MESHCHAT_X")) == (
        "MESHCHAT_X: expected true or false, got 'maybe'"
    )


def test_text_and_paths_must_not_be_blank() -> None:
    assert parse_text("meshchat", "MESHCHAT_X") == "meshchat"
    assert error(lambda: parse_text(" ", "MESHCHAT_X")) == "MESHCHAT_X: must not be empty"
    assert parse_path("keys", "MESHCHAT_X") == Path("keys")
    assert error(lambda: parse_path("", "MESHCHAT_X")) == "MESHCHAT_X: must not be empty"


# --- tables and the rules between values ----------------------------------------------------------

SIZE = Setting("queue-size", integer(minimum=1), "8", "A size.")
ON = Setting("feature", parse_bool, "true", "A switch.")


def test_parse_settings_reads_each_by_key_and_reports_the_first_bad_one() -> None:
    values = parse_settings((SIZE, ON), {"queue_size": "16", "feature": False})
    assert values[SIZE] == 16
    assert values[ON] is False
    assert ON.is_switch
    assert not SIZE.is_switch
    assert error(lambda: parse_settings((SIZE, ON), {"queue_size": "0", "feature": "x"})) == (
        "MESHCHAT_QUEUE_SIZE: must be at least 1"
    )


SECRET = Setting("token", parse_text, "none", "A secret.", secret=True)


def test_a_secret_setting_comes_from_its_text_its_file_or_its_default(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("s3cret\n")
    assert (SECRET.file_setting, SECRET.file_key) == ("token-file", "token_file")
    assert SECRET.file_env == "MESHCHAT_TOKEN_FILE"
    assert parse_settings([SECRET], {"token": None, "token_file": str(path)})[SECRET] == "s3cret"
    assert parse_settings([SECRET], {"token": "given", "token_file": None})[SECRET] == "given"
    assert parse_settings([SECRET], {"token": None, "token_file": None})[SECRET] == "none"
    assert parse_settings([SECRET], {"token": None})[SECRET] == "none"


def test_a_secret_setting_given_twice_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("s3cret")
    assert error(lambda: parse_settings([SECRET], {"token": "x", "token_file": str(path)})) == (
        "MESHCHAT_TOKEN and MESHCHAT_TOKEN_FILE: give one of them, not both"
    )


def test_a_secret_file_that_cannot_be_read_or_parsed_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    assert error(lambda: DATABASE_URL.from_file(str(missing))) == (
        f"MESHCHAT_DATABASE_URL_FILE: cannot read {missing}: No such file or directory"
    )
    assert error(lambda: DATABASE_URL.from_file(str(tmp_path))).startswith(
        f"MESHCHAT_DATABASE_URL_FILE: cannot read {tmp_path}: "
    )
    assert error(lambda: DATABASE_URL.from_file(" ")) == (
        "MESHCHAT_DATABASE_URL_FILE: must not be empty"
    )
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe")
    assert error(lambda: DATABASE_URL.from_file(str(binary))) == (
        f"MESHCHAT_DATABASE_URL_FILE: {binary} is not UTF-8 text"
    )
    wrong = tmp_path / "wrong"
    wrong.write_text("mysql://root:hunter2@db/chat\n")
    message = error(lambda: DATABASE_URL.from_file(str(wrong)))
    assert message == (
        "MESHCHAT_DATABASE_URL_FILE: expected sqlite:///path or postgresql://user@host/db, "
        f"got the content of {wrong}"
    )
    assert "hunter2" not in message


def test_a_secret_file_keeps_all_but_one_trailing_line_break(tmp_path: Path) -> None:
    path = tmp_path / "url"
    path.write_text("postgresql://u:p@db/chat\r\n")
    assert DATABASE_URL.from_file(str(path)).url == "postgresql://u:p@db/chat"
    path.write_text("postgresql://u:p@db/chat")
    assert DATABASE_URL.from_file(str(path)).url == "postgresql://u:p@db/chat"


def test_a_setting_without_a_default_must_be_given_one() -> None:
    address = Setting("address", parse_host_port, None, "An address.")
    with pytest.raises(TypeError, match="address has no default"):
        _ = address.default_value
    assert address.with_default("127.0.0.1:1").default_value == HostPort("127.0.0.1", 1)


def test_the_refresh_token_outlives_the_access_token() -> None:
    assert error(lambda: TokenPolicy(access_ttl=600, refresh_ttl=600)) == (
        "MESHCHAT_REFRESH_TOKEN_TTL: must be longer than the access-token TTL"
    )


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"memory_kib": 1024}, "MESHCHAT_ARGON2_MEMORY_KIB: 1024 is below the OWASP minimum 19456"),
        ({"time_cost": 1}, "MESHCHAT_ARGON2_TIME_COST: 1 is below the OWASP minimum 2"),
        ({"parallelism": 0}, "argon2id parallelism: 0 is below the OWASP minimum 1"),
    ],
)
def test_argon2_parameters_below_the_owasp_minimum_are_refused(
    parameters: dict[str, int], message: str
) -> None:
    assert error(lambda: Argon2Parameters(**parameters)) == message
