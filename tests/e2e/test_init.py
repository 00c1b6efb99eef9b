"""`faultbox init` through the front door: the spec it writes for a real command passes `faultbox
check` and `faultbox test`; the spec it translates from a compose file (PostgreSQL, Redis and an
app) passes `check` and `plan`, and runs; it never overwrites a spec; a broken compose file is
refused with its line."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from support import faultbox_cli, free_port

APP = """
import http.server, os, sys

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = (os.environ.get("DATABASE_URL", "") + "\\n").encode()
        self.send_response(200 if self.path in ("/", "/healthz") else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        print("request", self.path, flush=True)

port = int(sys.argv[sys.argv.index("--port") + 1])
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def test_init_a_command_then_check_and_test(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(APP)
    port = str(free_port())
    out = faultbox_cli(
        "init",
        "--name",
        "api",
        "--port",
        port,
        "--health",
        "/healthz",
        "--",
        sys.executable,
        "app.py",
        "--port",
        port,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "wrote faultbox.star" in out.stderr
    spec = (tmp_path / "faultbox.star").read_text()
    assert f'healthcheck = http("127.0.0.1:{port}/healthz"),' in spec
    check = faultbox_cli("check", cwd=tmp_path)  # ./faultbox.star, as init told
    assert check.returncode == 0, check.stdout + check.stderr
    assert "test_api_answers" in check.stdout and "test_api_answers_when_slow" in check.stdout
    run = faultbox_cli("test", "--seed", "3", "-v", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 passed, 0 failed" in run.stdout
    assert "fault api.sendto=delay(100ms): matched" in run.stdout  # the example fault really fired
    assert "Traceback" not in run.stdout + run.stderr


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    mine = tmp_path / "faultbox.star"
    mine.write_text("# my spec\n")
    out = faultbox_cli("init", "--port", "8080", "--", sys.executable, "app.py", cwd=tmp_path)
    assert out.returncode == 1
    assert "error [BAD_OPTION]: faultbox.star already exists; faultbox init does not overwrite a spec" in out.stderr
    assert "--output FILE" in out.stderr and "--force" in out.stderr
    assert "Traceback" not in out.stderr
    assert mine.read_text() == "# my spec\n"
    (tmp_path / "docker-compose.yml").write_text("services:\n  db: {image: postgres:15}\n")
    out = faultbox_cli("init", "--from-compose", cwd=tmp_path)
    assert out.returncode == 1 and "faultbox.star already exists" in out.stderr
    assert mine.read_text() == "# my spec\n"


def test_init_refuses_a_compose_file_that_does_not_parse(tmp_path: Path) -> None:
    (tmp_path / "docker-compose.yml").write_text("services:\n  api:\n    image: x\n   ports: ['80:80']\n")
    out = faultbox_cli("init", "--from-compose", "docker-compose.yml", cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.startswith("error [BAD_OPTION]: docker-compose.yml:4:4: not valid YAML")
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "faultbox.star").exists()


COMPOSE = """
services:
  db:
    image: postgres:15
    environment:
      POSTGRES_DB: shop
      POSTGRES_USER: shop
      POSTGRES_PASSWORD: secret
    ports: ["127.0.0.1:5432:5432"]
    volumes: ["./schema.sql:/docker-entrypoint-initdb.d/01-schema.sql"]
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U shop"]
  cache:
    image: redis:7
    command: ["redis-server", "--requirepass", "hunter2"]
  api:
    build: ./api
    command: ["@PYTHON@", "app.py", "--port", "@PORT@"]
    ports: ["@PORT@:80"]
    environment:
      - DATABASE_URL=postgres://shop:secret@db:5432/shop
      - REDIS_URL=redis://:hunter2@cache:6379/0
    depends_on:
      db:
        condition: service_healthy
      cache:
        condition: service_started
    healthcheck:
      test: ["CMD", "curl", "-f", "http://localhost:80/healthz"]
"""


def test_init_from_compose_then_check_plan_and_test(tmp_path: Path) -> None:
    port = str(free_port())
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "app.py").write_text(APP)
    (tmp_path / "schema.sql").write_text("CREATE TABLE orders (id serial PRIMARY KEY, sku text);\n")
    (tmp_path / "docker-compose.yml").write_text(
        textwrap.dedent(COMPOSE).replace("@PYTHON@", sys.executable).replace("@PORT@", port)
    )
    (tmp_path / "specs").mkdir()
    out = faultbox_cli("init", "--from-compose", "docker-compose.yml", "--output", "specs/shop.star", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "wrote specs/shop.star from docker-compose.yml (3 services)" in out.stderr
    assert "needs your attention" in out.stderr and "api: runs `" in out.stderr
    spec = (tmp_path / "specs" / "shop.star").read_text()
    assert 'db = postgres("db", database = "shop", user = "shop", password = "secret", seed = db_seed)' in spec
    assert 'db.main.exec(sql = load_file("../schema.sql"))' in spec
    assert 'cache = redis("cache", password = "hunter2")' in spec
    assert '"DATABASE_URL": "postgres://shop:secret@" + db.main.addr + "/shop",' in spec
    assert f'interface("main", "http", {port})' in spec and 'cwd = "../api",' in spec

    check = faultbox_cli("check", "specs/shop.star", cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "specs/shop.star: 3 services, 4 tests" in check.stdout
    plan = faultbox_cli("plan", "specs/shop.star", cwd=tmp_path)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "depends on db, cache" in plan.stdout and "faults: db.main:drop()" in plan.stdout

    # The app runs as written: the servers start from @faultbox/services.star, seeded with the
    # compose file's init script, and the app answers through its proxy.
    run = faultbox_cli("test", "specs/shop.star", "--seed", "1", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "4 passed, 0 failed" in run.stdout
