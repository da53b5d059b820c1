"""Receives a multipart upload straight from the socket to a file under a generated name.

The body is parsed as it arrives (python-multipart's streaming parser), file bytes go to disk in ~1 MiB writes
made in a worker thread, and the size limit is enforced while streaming: memory stays flat and the event loop
is never blocked, whatever the client sends.

After a rejection the rest of a moderately oversized body is still read and thrown away: a server that answers
and closes while the client is still sending makes the client's kernel reset the connection, and the client
then sees "connection reset" instead of the 413 that explains the problem.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from service.errors import ApiError

FILE_FIELD = "file"
FLUSH_BYTES = 1024 * 1024
MAX_FIELD_BYTES = 4096
MAX_FIELDS = 16
FORM_OVERHEAD = 64 * 1024  # boundaries, part headers and the small form fields around the file
DRAIN_LIMIT = 16 * 1024 * 1024  # after a rejection, read and discard at most this much more


@dataclass
class Upload:
    path: Path  # under the uploads folder, named by a generated id
    filename: str  # the client's file name, for display only
    size: int
    fields: dict[str, str]


@dataclass
class _Part:
    headers: dict[str, str] = field(default_factory=dict)
    name: str | None = None
    is_file: bool = False
    value: bytearray = field(default_factory=bytearray)


class _FormCollector:
    """The parser's callbacks: form fields kept in memory (they are tiny), file bytes queued for the disk."""

    def __init__(self, max_file_bytes: int, too_large_detail: str):
        self.max_file_bytes = max_file_bytes
        self.too_large_detail = too_large_detail
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.file_size = 0
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.rejection: ApiError | None = None
        self.finished = False
        self._part = _Part()
        self._header_field = bytearray()
        self._header_value = bytearray()

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._header_field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._header_value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def reject(self, error: ApiError) -> None:
        if self.rejection is None:
            self.rejection = error
        self.pending, self.pending_size = [], 0

    def _part_begin(self) -> None:
        self._part = _Part()

    def _header_end(self) -> None:
        name = bytes(self._header_field).decode("latin-1").strip().lower()
        self._part.headers[name] = bytes(self._header_value).decode("latin-1").strip()
        self._header_field.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        kind, params = parse_options_header(self._part.headers.get("content-disposition", ""))
        name = params.get(b"name")
        if kind != b"form-data" or name is None:
            return self.reject(ApiError(400, "malformed_upload", "a form part has no Content-Disposition name"))
        self._part.name = name.decode("utf-8", errors="replace")
        self._part.is_file = self._part.name == FILE_FIELD or b"filename" in params
        if not self._part.is_file:
            return None
        if self._part.name != FILE_FIELD:
            return self.reject(ApiError(422, "invalid_upload", f"the scene goes in the form field named "
                                        f"{FILE_FIELD!r}, not {self._part.name[:40]!r}"))
        if self.filename is not None:
            return self.reject(ApiError(422, "invalid_upload", "send exactly one scene per request"))
        self.filename = display_name(params.get(b"filename", b"").decode("utf-8", errors="replace"))
        return None

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self.rejection is not None:
            return
        if self._part.is_file:
            self.file_size += end - start
            if self.file_size > self.max_file_bytes:
                return self.reject(ApiError(413, "upload_too_large", self.too_large_detail))
            self.pending.append(bytes(data[start:end]))
            self.pending_size += end - start
        else:
            self._part.value.extend(data[start:end])
            if len(self._part.value) > MAX_FIELD_BYTES:
                self.reject(ApiError(422, "invalid_option", f"form field {self._part.name[:40]!r} is too long"))
        return None

    def _part_end(self) -> None:
        if self.rejection is not None or self._part.is_file or self._part.name is None:
            return
        if len(self.fields) >= MAX_FIELDS or self._part.name in self.fields:
            return self.reject(ApiError(422, "invalid_option", "too many or repeated form fields"))
        try:
            self.fields[self._part.name] = self._part.value.decode("utf-8")
        except UnicodeDecodeError:
            self.reject(ApiError(422, "invalid_option", f"form field {self._part.name[:40]!r} is not UTF-8 text"))

    def _end(self) -> None:
        self.finished = True


def display_name(raw: str) -> str:
    """The client's file name as harmless text: last path component, printable, bounded. Never a path here."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable())[:120].strip()
    return name or "upload.tif"


def _boundary(request: Request) -> bytes:
    kind, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise ApiError(415, "unsupported_media_type",
                       f"send the scene as multipart/form-data with the GeoTIFF in a field named {FILE_FIELD!r}")
    return boundary


def _declared_length(request: Request) -> int | None:
    try:
        return int(request.headers["content-length"])
    except (KeyError, ValueError):
        return None


async def receive_scene(request: Request, uploads_dir: Path, max_file_bytes: int, too_large_detail: str) -> Upload:
    boundary = _boundary(request)
    declared = _declared_length(request)
    if declared is not None and declared > max_file_bytes + FORM_OVERHEAD + DRAIN_LIMIT:
        # Too large to be worth reading: answer now. Clients that wait for "100 Continue" (curl does for large
        # bodies) never send the body at all.
        raise ApiError(413, "upload_too_large", too_large_detail, {"Connection": "close"})

    collector = _FormCollector(max_file_bytes, too_large_detail)
    parser = MultipartParser(boundary, collector.callbacks())
    path = uploads_dir / f"{uuid.uuid4().hex}.part"
    handle = await anyio.to_thread.run_sync(open, path, "wb")
    received = drained = 0
    try:
        try:
            async for chunk in request.stream():
                received += len(chunk)
                if received > max_file_bytes + FORM_OVERHEAD:  # padding outside the parts counts too
                    collector.reject(ApiError(413, "upload_too_large", too_large_detail))
                if collector.rejection is not None:
                    drained += len(chunk)
                    if drained > DRAIN_LIMIT:
                        collector.rejection.headers["Connection"] = "close"
                        break
                    continue
                try:
                    parser.write(chunk)
                except ValueError:  # MultipartParseError and its siblings
                    collector.reject(ApiError(400, "malformed_upload", "the multipart body is malformed"))
                if collector.pending_size >= FLUSH_BYTES:
                    await _flush(handle, collector)
        except ClientDisconnect:
            raise ApiError(400, "upload_interrupted", "the client closed the connection before the upload ended")
        if collector.rejection is None:
            try:
                parser.finalize()
            except ValueError:
                pass
            if not collector.finished:
                collector.reject(ApiError(400, "malformed_upload", "the upload ended before the multipart body did"))
        if collector.rejection is not None:
            raise collector.rejection
        await _flush(handle, collector)
        await anyio.to_thread.run_sync(handle.close)
        if collector.filename is None:
            raise ApiError(422, "invalid_upload", f"no file in the form field {FILE_FIELD!r}")
        if collector.file_size == 0:
            raise ApiError(422, "invalid_upload", f"{collector.filename} is empty")
        return Upload(path, collector.filename, collector.file_size, collector.fields)
    except BaseException:
        with anyio.CancelScope(shield=True):  # also when the request was cancelled: never leave a partial file
            await anyio.to_thread.run_sync(_discard, handle, path)
        raise


async def _flush(handle, collector: _FormCollector) -> None:
    if collector.pending:
        data = b"".join(collector.pending)
        collector.pending, collector.pending_size = [], 0
        try:
            await anyio.to_thread.run_sync(handle.write, data)
        except OSError:  # the disk is full: the server's problem, not the client's, and likely to pass
            raise ApiError(507, "insufficient_storage", "the server has no room for this upload now; try later",
                           {"Retry-After": "60"}) from None


def _discard(handle, path: Path) -> None:
    handle.close()
    path.unlink(missing_ok=True)
