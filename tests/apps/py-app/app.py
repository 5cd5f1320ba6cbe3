# A bottle app: serves message.txt on $PORT.
import os

from bottle import route, run


@route("/")
def index():
    with open("message.txt") as f:
        return f.read()


run(host="0.0.0.0", port=int(os.environ["PORT"]), quiet=True)
