# A plain WSGI app whose dependencies poetry locked (poetry.lock), run by gunicorn.
import sys
from importlib.metadata import version


def application(environ, start_response):
    body = "poetry app on python %d.%d: gunicorn %s, packaging %s\n" % (
        sys.version_info[0],
        sys.version_info[1],
        version("gunicorn"),
        version("packaging"),
    )
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
