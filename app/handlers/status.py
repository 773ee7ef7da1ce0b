"""``GET /status``: the live status page (``app/static/status.*``), one self-contained HTML document.

The page subscribes to the ``status`` channel of ``/ws`` and draws what every worker publishes there
(``app.status``).  Its stylesheet and script are put inline when this module is imported, so the page
is one response with nothing fetched from elsewhere.
"""

from __future__ import annotations

from importlib import resources

from app import api
from app.handlers.base import BaseHandler

_INLINE = {  # the tag in status.html -> the file it names, and the element it becomes
    '<link rel="stylesheet" href="status.css">': ("status.css", "style"),
    '<script src="status.js"></script>': ("status.js", "script"),
}


def _page() -> bytes:
    static = resources.files("app") / "static"
    page = (static / "status.html").read_text(encoding="utf-8")
    for tag, (name, element) in _INLINE.items():
        assert tag in page, f"status.html must include {name} as {tag}"
        page = page.replace(tag, f"<{element}>\n{(static / name).read_text(encoding='utf-8')}</{element}>")
    return page.encode()


PAGE = _page()


class StatusPageHandler(BaseHandler):
    endpoint = api.Endpoint(operations=(
        api.Operation("get", "The live status page: every worker's figures, refreshed each second", responses={
            200: api.Response("An HTML page that subscribes to the `status` channel of /ws.", {"type": "string"},
                              media_type="text/html"),
        }),
    ))

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.finish(PAGE)
