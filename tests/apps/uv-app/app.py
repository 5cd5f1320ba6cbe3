# A bottle app whose dependencies uv installs from uv.lock.
import os
import sys

import bottle


@bottle.route("/")
def index():
    return "uv app on python %d.%d with bottle %s\n" % (
        sys.version_info[0],
        sys.version_info[1],
        bottle.__version__,
    )


bottle.run(host="0.0.0.0", port=int(os.environ["PORT"]), quiet=True)
