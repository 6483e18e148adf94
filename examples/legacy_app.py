"""A deliberately ordinary legacy Flask app to put behind cloakroom.

It keeps its state the way a default Flask app does: in Flask's signed,
client-side `session` cookie, with default cookie flags and no idle timeout.
Nothing here knows about cloakroom; the proxy is what makes it safe.

Run:  python examples/legacy_app.py [--port 5000]
"""

import argparse
import os

from flask import Flask, redirect, request, session, url_for, jsonify

app = Flask(__name__)
app.secret_key = os.environ.get("LEGACY_APP_SECRET", "legacy-app-dev-secret")

USERS = {"alice": "wonderland", "bob": "builder"}

PAGE = """<!doctype html><title>{title}</title><h1>{title}</h1>{body}"""


@app.get("/")
def index():
    user = session.get("user")
    if user:
        return PAGE.format(title="Legacy app", body=f'<p>Hello {user}. <a href="/dashboard">Dashboard</a></p>')
    return PAGE.format(title="Legacy app", body='<p><a href="/login">Log in</a></p>')


@app.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "POST":
        name = request.form.get("username", "")
        if USERS.get(name) == request.form.get("password"):
            session.clear()
            session["user"] = name
            nxt = request.args.get("next", "")
            if not nxt.startswith("/") or nxt.startswith("//"):
                nxt = url_for("dashboard")
            return redirect(nxt)
        return PAGE.format(title="Log in", body="<p>Wrong user name or password.</p>"), 401
    return PAGE.format(
        title="Log in",
        body='<form method="post"><input name="username" placeholder="user">'
        '<input name="password" type="password" placeholder="password">'
        "<button>Log in</button></form>",
    )


@app.get("/dashboard")
def dashboard():
    user = session.get("user")
    if not user:
        return redirect(url_for("login"))
    session["visits"] = session.get("visits", 0) + 1
    return PAGE.format(title="Dashboard", body=f"<p>{user}: visit {session['visits']}, cart {session.get('cart', [])}</p>")


@app.post("/cart")
def add_to_cart():
    if not session.get("user"):
        return jsonify(error="login required"), 401
    item = request.form.get("item") or (request.get_json(silent=True) or {}).get("item", "")
    session["cart"] = session.get("cart", []) + [item]
    return jsonify(cart=session["cart"])


@app.get("/api/state")
def state():
    """The app's view of its session and of the headers the proxy sent."""
    return jsonify(
        user=session.get("user"),
        visits=session.get("visits", 0),
        cart=session.get("cart", []),
        forwarded_user=request.headers.get("X-Forwarded-User"),
        forwarded_for=request.headers.get("X-Forwarded-For"),
        cookie_header=request.headers.get("Cookie"),
    )


@app.get("/api/poll")
def poll():
    """A background-polling endpoint (a candidate for session.passive_paths)."""
    return jsonify(user=session.get("user"))


try:  # optional: a websocket endpoint when flask-sock is installed
    from flask_sock import Sock
except ImportError:
    Sock = None

if Sock is not None:
    sock = Sock(app)

    @sock.route("/ws")
    def ws(conn):
        """Echoes each message, prefixed with the session's user."""
        while True:
            conn.send(f"{session.get('user')}: {conn.receive()}")


@app.route("/logout", methods=["GET", "POST"])
def logout():
    session.clear()
    return redirect(url_for("index"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    app.run(host=args.host, port=args.port, threaded=True)


if __name__ == "__main__":
    main()
