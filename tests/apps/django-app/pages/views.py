import sys

from django.shortcuts import render

MESSAGE = "hello from django v1"


def index(request):
    version = "%d.%d" % sys.version_info[:2]
    return render(request, "index.html", {"message": MESSAGE, "python": version})
