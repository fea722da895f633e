"""Provider configuration: built-in endpoints, overrides, and keys from ``.env``.

A ``ProviderConfig`` says where an OpenAI-compatible endpoint lives and which environment
variable holds its key; it never holds a key. ``resolve_provider_config`` applies the
overrides (the command line's ``--base-url``, then ``$DAYDREAM_<NAME>_BASE_URL``, then the
catalog's ``base_url``, then the defaults); ``load_dotenv`` fills the environment from a ``.env`` file without ever
overriding a variable that is already set.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlsplit, urlunsplit

from daydream.errors import ConfigError

DEFAULT_TIMEOUT_S = 300.0
DEFAULT_CONNECT_TIMEOUT_S = 10.0
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class ProviderConfig:
    """Where an OpenAI-compatible endpoint lives and how to authenticate to it.

    ``api_key_env`` names the environment variable that holds the key, never the key itself.
    ``key_required`` makes a missing key a ``ConfigError`` when the provider is built (a
    hosted API); otherwise the key is sent only if the variable is set (a local server
    started with ``--api-key``). ``timeout`` bounds a whole call, ``connect_timeout`` the TCP
    and TLS handshake. ``offline`` marks the deterministic dry-run provider, which has no URL.
    """

    name: str
    base_url: str
    api_key_env: str | None = None
    key_required: bool = False
    timeout: float = DEFAULT_TIMEOUT_S
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    offline: bool = False
    # Replicas: every base URL of one deployment when there are several (``base_url`` is
    # the first); empty for one endpoint.
    base_urls: tuple[str, ...] = ()


DEFAULT_PROVIDERS: Mapping[str, ProviderConfig] = MappingProxyType(
    {
        "openrouter": ProviderConfig(
            name="openrouter",
            base_url="https://openrouter.ai/api/v1",
            api_key_env="OPENROUTER_API_KEY",
            key_required=True,
            # OpenRouter's app attribution; harmless everywhere else.
            headers={"X-Title": "daydream"},
        ),
        "openai": ProviderConfig(
            name="openai",
            base_url="https://api.openai.com/v1",
            api_key_env="OPENAI_API_KEY",
            key_required=True,
        ),
        "ollama": ProviderConfig(name="ollama", base_url="http://localhost:11434/v1"),
        "vllm": ProviderConfig(
            name="vllm", base_url="http://localhost:8000/v1", api_key_env="VLLM_API_KEY"
        ),
        "llamacpp": ProviderConfig(
            name="llamacpp", base_url="http://localhost:8080/v1", api_key_env="LLAMACPP_API_KEY"
        ),
        "lmstudio": ProviderConfig(name="lmstudio", base_url="http://localhost:1234/v1"),
        "offline": ProviderConfig(name="offline", base_url="", offline=True),
    }
)


def resolve_provider_config(
    name: str,
    *,
    base_url: str | Sequence[str] | None = None,
    providers: Mapping[str, ProviderConfig] | None = None,
    environ: Mapping[str, str] | None = None,
    command_line_url: str | None = None,
) -> ProviderConfig:
    """The configuration of provider ``name`` after overrides.

    The base URL is, first found wins: ``command_line_url`` (``--base-url NAME=URL``),
    then ``$DAYDREAM_<NAME>_BASE_URL``, then ``base_url`` (the catalog's value), then the
    configuration in ``providers`` or ``DEFAULT_PROVIDERS``: what the user typed for this
    run beats the deployment's environment, which beats the committed catalog. A name that
    is not known becomes a generic OpenAI-compatible provider when a base URL is given,
    with an optional key in ``$<NAME>_API_KEY``. Several base URLs (a list, or one string
    with commas) are replicas of one deployment: ``base_urls``.
    """
    environ = os.environ if environ is None else environ
    known = {**DEFAULT_PROVIDERS, **(providers or {})}
    env_name = _env_name(name)
    url_var = f"DAYDREAM_{env_name}_BASE_URL"
    override = (
        (command_line_url or "").strip() or (environ.get(url_var) or "").strip() or base_url
    )
    config = known.get(name)
    if config is None:
        if not override:
            raise ConfigError(
                f"provider {name}: unknown provider (known: {', '.join(sorted(known))}); "
                f"give its model a base_url in the catalog or set {url_var}"
            )
        config = ProviderConfig(
            name=name, base_url=_split_urls(override)[0], api_key_env=f"{env_name}_API_KEY"
        )
    if config.offline:
        return config
    urls = _split_urls(override) if override else [config.base_url]
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f"provider {name}: base_url {display_url(url)!r} must be an "
                "http:// or https:// URL such as http://localhost:8000/v1"
            )
    urls = list(dict.fromkeys(url.rstrip("/") for url in urls))
    return replace(config, base_url=urls[0], base_urls=tuple(urls) if len(urls) > 1 else ())


def _split_urls(value: str | Sequence[str]) -> list[str]:
    """Base URLs from a list or a comma-separated string (replicas), blanks dropped."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return [item.strip() for item in items if item and item.strip()] or [""]


def load_dotenv(
    path: str | os.PathLike[str] = ".env", *, environ: MutableMapping[str, str] | None = None
) -> list[str]:
    """Set the variables of a ``.env`` file that the environment does not already have.

    Lines are ``KEY=VALUE``, optionally prefixed by ``export``; blank lines and ``#``
    comments are skipped; values may be single-quoted (verbatim) or double-quoted (with
    ``\\n``, ``\\t``, ``\\"`` and ``\\\\`` escapes); an unquoted value ends at `` #``. A later
    line wins over an earlier one. A missing file is not an error. Returns the names set,
    never the values (they are secrets).
    """
    environ = os.environ if environ is None else environ
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({type(exc).__name__}); fix or remove it") from None
    values: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("export "):
            stripped = stripped[len("export ") :].lstrip()
        key, sep, raw = stripped.partition("=")
        key = key.strip()
        if not sep or not _DOTENV_KEY_RE.fullmatch(key):
            raise ConfigError(
                f"{path}:{lineno}: expected KEY=VALUE (the line is not shown: it may hold a secret)"
            )
        value = _dotenv_value(raw.strip())
        if value is None:
            raise ConfigError(f"{path}:{lineno}: {key}: unterminated quote")
        values[key] = value
    loaded = [key for key in values if key not in environ]
    for key in loaded:
        environ[key] = values[key]
    return loaded


def display_url(url: str) -> str:
    """The URL without credentials or query string, fit for a message."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unparseable URL)"
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def base_url_variable(name: str) -> str:
    """The environment variable that overrides provider ``name``'s base URL."""
    return f"DAYDREAM_{_env_name(name)}_BASE_URL"


def _env_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()


_DOTENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOTENV_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def _dotenv_value(raw: str) -> str | None:
    if raw[:1] == "'":
        end = raw.find("'", 1)
        return None if end < 0 else raw[1:end]
    if raw[:1] == '"':
        out: list[str] = []
        index = 1
        while index < len(raw):
            char = raw[index]
            if char == "\\" and index + 1 < len(raw):
                out.append(_DOTENV_ESCAPES.get(raw[index + 1], "\\" + raw[index + 1]))
                index += 2
                continue
            if char == '"':
                return "".join(out)
            out.append(char)
            index += 1
        return None
    comment = raw.find(" #")
    return (raw if comment < 0 else raw[:comment]).strip()
