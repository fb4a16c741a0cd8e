"""Where the API is and who the caller is: flags, then environment variables, then the config
file that `dataport login` writes (mode 0600: it holds a credential).

    DATAPORT_API_URL   https://<api>.execute-api.<region>.amazonaws.com/v1
    DATAPORT_WS_URL    wss://<api>.execute-api.<region>.amazonaws.com/v1 (live progress)
    DATAPORT_TOKEN     a JWT or an API key (dpk_...)
    DATAPORT_CONFIG    the config file (default: $XDG_CONFIG_HOME/dataport/config.json)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from dataport_cli.exit_codes import CliError, ExitCode

API_KEY_PREFIX = "dpk_"


def config_path() -> Path:
    explicit = os.environ.get("DATAPORT_CONFIG")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "dataport" / "config.json"


@dataclass(frozen=True)
class Settings:
    api_url: str | None
    ws_url: str | None
    token: str | None

    def __repr__(self) -> str:  # a traceback or a debugger never shows the credential
        return f"Settings(api_url={self.api_url!r}, ws_url={self.ws_url!r}, token=<hidden>)"

    def require_api(self) -> tuple[str, str]:
        if not self.api_url:
            raise CliError(ExitCode.USAGE, "No API URL: pass --api-url, set DATAPORT_API_URL "
                                           "or run `dataport login`.")
        if not self.token:
            raise CliError(ExitCode.AUTH, "No credential: set DATAPORT_TOKEN, pass --token or "
                                          "run `dataport login`.")
        return self.api_url.rstrip("/"), self.token


def authorization(token: str) -> str:
    """The Authorization header for a JWT (Bearer) or an API key (ApiKey)."""
    scheme = "ApiKey" if token.startswith(API_KEY_PREFIX) else "Bearer"
    return f"{scheme} {token}"


def read_file(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CliError(ExitCode.USAGE, f"{path} is not a dataport config file ({error}); "
                                       "run `dataport login` again.") from None
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def resolve(api_url: str | None, ws_url: str | None, token: str | None) -> Settings:
    stored = read_file(config_path())
    return Settings(
        api_url=api_url or os.environ.get("DATAPORT_API_URL") or stored.get("api_url"),
        ws_url=ws_url or os.environ.get("DATAPORT_WS_URL") or stored.get("ws_url"),
        token=token or os.environ.get("DATAPORT_TOKEN") or stored.get("token"))


def save(settings: Settings) -> Path:
    """Write the config file readable by its owner only (created 0600, never wider)."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = {k: v for k, v in {"api_url": settings.api_url, "ws_url": settings.ws_url,
                              "token": settings.token}.items() if v}
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # an older file may have been wider
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        json.dump(data, file, indent=2)
    return path
