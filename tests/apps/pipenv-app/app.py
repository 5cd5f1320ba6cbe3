# A Flask app whose dependencies pipenv locked (Pipfile.lock), run by gunicorn.
import sys
from importlib.metadata import version

from flask import Flask

app = Flask(__name__)


@app.route("/")
def index():
    return "pipenv app on python %d.%d: flask %s, werkzeug %s, gunicorn %s\n" % (
        sys.version_info[0],
        sys.version_info[1],
        version("flask"),
        version("werkzeug"),
        version("gunicorn"),
    )
