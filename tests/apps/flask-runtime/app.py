# A Flask app on the Python runtime.txt names; shows what the buildpack set up.
import os
import sys

from flask import Flask

app = Flask(__name__)


@app.route("/")
def index():
    with open("built-by-hook.txt") as f:
        hook = f.read().strip()
    return "flask on python %d.%d; workers=%s; unbuffered=%s; %s\n" % (
        sys.version_info[0],
        sys.version_info[1],
        os.environ.get("WEB_CONCURRENCY", "unset"),
        os.environ.get("PYTHONUNBUFFERED", "unset"),
        hook,
    )


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=int(os.environ["PORT"]))
