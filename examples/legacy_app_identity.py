"""examples/legacy_app.py plus the lines that tell cloakroom who is logged in.

With `[auth] provider = "upstream"`, cloakroom binds a user to the session
when the app answers with `X-Cloakroom-Login: <user>`, and ends the session
on `X-Cloakroom-Logout`. The hook below (README, "In front of a Flask app")
sends them; everything else is the plain legacy app.

Run:  python examples/legacy_app_identity.py [--port 5000]
"""

from flask import request, session

import legacy_app
from legacy_app import app


@app.after_request
def tell_cloakroom(response):
    if request.path == "/login" and request.method == "POST" and response.status_code == 302:
        response.headers["X-Cloakroom-Login"] = session["user"]
    elif request.path == "/logout":
        response.headers["X-Cloakroom-Logout"] = "1"
    return response


if __name__ == "__main__":
    legacy_app.main()
