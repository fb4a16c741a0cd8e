"""The REST API over HTTP (requests): one session with the credential, error answers turned into
exit codes. Presigned URLs (upload forms, download links) are credentials too: used, never shown.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from requests_toolbelt import MultipartEncoder, MultipartEncoderMonitor

from dataport_cli import __version__
from dataport_cli.config import Settings, authorization
from dataport_cli.exit_codes import CliError, ExitCode

TIMEOUT = (10, 60)
_CODES = {400: ExitCode.USAGE, 401: ExitCode.AUTH, 403: ExitCode.AUTH,
          404: ExitCode.NOT_FOUND, 410: ExitCode.NOT_FOUND, 429: ExitCode.RATE_LIMITED}

Json = dict[str, Any]


class Api:
    def __init__(self, settings: Settings) -> None:
        self.base, token = settings.require_api()
        self.session = requests.Session()
        self.session.headers.update({"Authorization": authorization(token),
                                     "User-Agent": f"dataport-cli/{__version__}"})

    def call(self, method: str, path: str, *, json: Json | None = None,
             params: Json | None = None, headers: dict[str, str] | None = None) -> Json:
        answer = self._send(method, path, json=json, params=params, headers=headers)
        body: Json = answer.json() if answer.content else {}
        return body

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            answer = self.session.request(method, f"{self.base}{path}", timeout=TIMEOUT,
                                          allow_redirects=False, **kwargs)
        except requests.RequestException as error:
            raise CliError(ExitCode.FAILED, f"Could not reach the API at {self.base}: "
                                            f"{type(error).__name__}") from None
        if answer.status_code >= 400:
            raise _error(answer)
        return answer

    def download_url(self, route: str) -> str:
        """The presigned link a download route (/exports/ID/download) redirects to (a
        credential: never printed)."""
        answer = self._send("GET", route)
        return answer.headers["Location"]

    def download(self, route: str, target: Path, on_bytes: Callable[[int, int | None], None],
                 *, again: str, on_chunk: Callable[[bytes], object] | None = None) -> Path:
        """Stream what `route` redirects to into `target` (a .part file renamed at the end: no
        half file left under the real name); `again` is the command that retries."""
        url = self.download_url(route)
        partial = target.with_name(target.name + ".part")
        try:
            with requests.get(url, stream=True, timeout=TIMEOUT) as answer:
                if answer.status_code >= 400:
                    raise CliError(ExitCode.FAILED, f"The download answered "
                                                    f"{answer.status_code}; try `{again}` again.")
                size = answer.headers.get("Content-Length")
                total = int(size) if size and size.isdigit() else None
                with partial.open("wb") as file:
                    for chunk in answer.iter_content(256 * 1024):
                        file.write(chunk)
                        if on_chunk is not None:
                            on_chunk(chunk)
                        on_bytes(len(chunk), total)
            partial.replace(target)
        except requests.RequestException as error:
            raise CliError(ExitCode.FAILED, f"The download broke off ({type(error).__name__}); "
                                            "try again.") from None
        finally:
            partial.unlink(missing_ok=True)
        return target

    @staticmethod
    def upload(form: Json, path: Path, on_bytes: Callable[[int, int], None]) -> None:
        """POST the file to S3 through the presigned form, streamed (never read whole)."""
        with path.open("rb") as file:
            encoder = MultipartEncoder(fields={**form["fields"],
                                               "file": (path.name, file,
                                                        "application/octet-stream")})
            seen = 0

            def advance(monitor: MultipartEncoderMonitor) -> None:
                nonlocal seen
                on_bytes(monitor.bytes_read - seen, monitor.len)
                seen = monitor.bytes_read

            monitor = MultipartEncoderMonitor(encoder, advance)
            try:
                answer = requests.post(form["url"], data=monitor,
                                       headers={"Content-Type": monitor.content_type},
                                       timeout=(10, 600))
            except requests.RequestException as error:
                raise CliError(ExitCode.FAILED, f"The upload broke off "
                                                f"({type(error).__name__}); try again.") from None
        if answer.status_code >= 300:
            raise CliError(ExitCode.FAILED, f"The upload was refused ({answer.status_code}); "
                                            "start the import again.")


def _error(answer: requests.Response) -> CliError:
    try:
        error = answer.json()["error"]
        code, message = str(error.get("code")), str(error.get("message"))
        details = error.get("details")
    except (ValueError, KeyError, TypeError, AttributeError):
        code, message, details = "http_error", answer.text[:200], None
    exit_code = _CODES.get(answer.status_code, ExitCode.FAILED)
    text = f"{message} ({answer.status_code} {code})"
    if isinstance(details, list):
        text += "".join(f"\n  {d.get('field', '?')}: {d.get('message', '')}" for d in details
                        if isinstance(d, dict))
    if answer.status_code == 429:
        text += "\n" + retry_note(answer.headers.get("Retry-After"))
    return CliError(exit_code, text)


def retry_note(retry_after: str | None) -> str:
    if retry_after and retry_after.isdigit():
        at = datetime.now(UTC) + timedelta(seconds=int(retry_after))
        return (f"Rate limited: retry in {retry_after} s (after "
                f"{at.strftime('%Y-%m-%d %H:%M:%S')} UTC).")
    return "Rate limited: retry later."

