"""`faultbox init --from-compose`: reading compose files (ports, environment, depends_on in their
several shapes) and translating them into a spec that loads."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from faultbox.cli.compose import ComposeError, Port, image_kind, image_repo, load_compose, parse_compose, translate
from faultbox.spec import load_spec


def _compose(text: str, path: str = "docker-compose.yml"):  # type: ignore[no-untyped-def]
    return parse_compose(textwrap.dedent(text), path)


def _service(text: str, name: str = "app"):  # type: ignore[no-untyped-def]
    return next(s for s in _compose(text).services if s.name == name)


def _spec(tmp_path: Path, text: str) -> tuple[str, list[str]]:
    """The translated spec of a compose file written in tmp_path; it must load."""
    compose = tmp_path / "docker-compose.yml"
    compose.write_text(textwrap.dedent(text))
    result = translate(load_compose(str(compose)), str(tmp_path), "docker-compose.yml")
    spec = tmp_path / "faultbox.star"
    spec.write_text(result.text)
    load_spec(str(spec))
    return result.text, result.attention


def test_short_port_forms() -> None:
    svc = _service(
        """
        services:
          app:
            image: x
            ports:
              - "8080:80"
              - "127.0.0.1:5432:5432"
              - 9000
              - 22:22
              - "[::1]:7000:7001"
              - "9090-9091:8080-8081/udp"
              - "127.0.0.1::6000"
        """
    )
    assert svc.ports == [
        Port(80, 8080),
        Port(5432, 5432, "127.0.0.1"),
        Port(9000),
        Port(22, 22),  # YAML 1.2, as Compose reads it: not the base-60 integer 1342
        Port(7001, 7000, "::1"),
        Port(8080, 9090, None, "udp"),
        Port(8081, 9091, None, "udp"),
        Port(6000, None, "127.0.0.1"),
    ]
    assert [p.local for p in svc.ports[:3]] == [8080, 5432, 9000]


def test_long_port_syntax_and_expose() -> None:
    svc = _service(
        """
        services:
          app:
            image: x
            ports:
              - target: 80
                published: "8081"
                host_ip: 127.0.0.1
                protocol: tcp
            expose: ["9100", 80]
        """
    )
    assert svc.ports == [Port(80, 8081, "127.0.0.1"), Port(9100)]


def test_bad_port_names_file_and_line() -> None:
    with pytest.raises(ComposeError) as err:
        _compose("services:\n  app:\n    image: x\n    ports:\n      - '1:2:3:4'\n", "c.yml")
    assert err.value.message.startswith('c.yml:4: app.ports[0]: "1:2:3:4" is not a port mapping')


def test_environment_list_and_map_forms(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TAG=7\nSECRET='s3'\n")
    (tmp_path / "app.env").write_text("FROM_FILE=1\nOVERRIDDEN=file\n")
    (tmp_path / "docker-compose.yml").write_text(
        textwrap.dedent(
            """
            services:
              listy:
                image: x
                environment:
                  - A=1
                  - B=with=equals
                  - FROM_SHELL
                  - SECRET
                  - LEVEL=${LOG_LEVEL:-info}
                  - COST=$$5
              mappy:
                image: x:${TAG}
                env_file: app.env
                environment:
                  N: 5
                  FLAG: true
                  WORD: yes
                  OVERRIDDEN: map
            """
        )
    )
    compose = load_compose(str(tmp_path / "docker-compose.yml"))
    listy, mappy = compose.services
    assert listy.environment == {"A": "1", "B": "with=equals", "SECRET": "s3", "LEVEL": "info", "COST": "$5"}
    assert listy.unset_env == ["FROM_SHELL"]
    assert mappy.image == "x:7"
    assert mappy.environment == {"FROM_FILE": "1", "OVERRIDDEN": "map", "N": "5", "FLAG": "true", "WORD": "yes"}


def test_depends_on_list_and_map_forms() -> None:
    compose = _compose(
        """
        services:
          db: {image: postgres:15}
          cache: {image: redis:7}
          listy: {image: x, depends_on: [db, cache]}
          mappy:
            image: x
            depends_on:
              db: {condition: service_healthy}
              cache: {condition: service_started}
        """
    )
    assert [s.depends_on for s in compose.services[2:]] == [["db", "cache"], ["db", "cache"]]
    with pytest.raises(ComposeError, match='"app" depends on "nope", which the file does not declare'):
        _compose("services:\n  app:\n    image: x\n    depends_on: [nope]\n")


def test_yaml_error_has_file_line_col() -> None:
    with pytest.raises(ComposeError) as err:
        _compose("services:\n  app:\n    image: x\n   ports: [1]\n", "broken.yml")
    assert err.value.message.startswith("broken.yml:4:4: not valid YAML")
    with pytest.raises(ComposeError, match="a compose file is a mapping with a `services:` mapping"):
        _compose("- just\n- a list\n")


@pytest.mark.parametrize(
    ("image", "kind"),
    [
        ("postgres:16-alpine", "postgres"),
        ("docker.io/library/postgres:15@sha256:abc", "postgres"),
        ("bitnami/postgresql:15", "postgres"),
        ("localhost:5000/redis", "redis"),
        ("redis:7", "redis"),
        ("valkey/valkey:8", "redis"),
        ("bitnami/kafka:3.6", "kafka"),
        ("confluentinc/cp-kafka:7.5.0", "kafka"),
        ("apache/kafka:3.7.0", "kafka"),
        ("docker.redpanda.com/redpandadata/redpanda:v24.1.1", "kafka"),
        ("confluentinc/cp-zookeeper:7.5.0", "zookeeper"),
        ("ghcr.io/acme/postgres-backup:1", "other"),
        ("nginx", "other"),
    ],
)
def test_image_kinds(image: str, kind: str) -> None:
    assert image_kind(image) == kind


def test_image_repo() -> None:
    assert image_repo("docker.io/library/postgres:16-alpine@sha256:00") == ("postgres", "16-alpine")
    assert image_repo("registry:5000/team/app") == ("team/app", "")


SHOP = """
services:
  db:
    image: postgres:15
    environment:
      POSTGRES_USER: shop
      POSTGRES_PASSWORD: secret
    ports: ["127.0.0.1:5432:5432"]
    volumes: ["./schema.sql:/docker-entrypoint-initdb.d/01.sql:ro", "pgdata:/var/lib/postgresql/data"]
  cache:
    image: redis:7-alpine
    command: redis-server --requirepass hunter2 --appendonly no
  zookeeper:
    image: confluentinc/cp-zookeeper:7.5.0
  kafka:
    image: bitnami/kafka:3.6
    depends_on: [zookeeper]
  api:
    build: ./api
    ports: ["8080:80"]
    environment:
      DATABASE_URL: postgres://shop:secret@db:5432/shop
      REDIS_URL: redis://:hunter2@cache/0
      BROKERS: kafka:9092,kafka:29092
      DB_HOST: db
      DB_PORT: "5432"
      DB_NAME: db
      GREETING: hello db
    depends_on:
      db: {condition: service_healthy}
      cache: {condition: service_started}
      kafka: {condition: service_started}
    healthcheck:
      test: ["CMD", "curl", "-f", "http://localhost/healthz"]
"""


def test_translation_of_servers_env_and_depends_on(tmp_path: Path) -> None:
    (tmp_path / "schema.sql").write_text("CREATE TABLE t (x int);\n")
    (tmp_path / "api").mkdir()
    text, attention = _spec(tmp_path, SHOP)
    assert 'load("@faultbox/services.star", "postgres", "redis", "kafka")' in text
    # the database is the image's: POSTGRES_DB defaults to the user; the init script is the seed
    assert 'db = postgres("db", database = "shop", user = "shop", password = "secret", seed = db_seed)' in text
    assert 'db.main.exec(sql = load_file("schema.sql"))' in text
    assert 'cache = redis("cache", password = "hunter2", appendonly = False)' in text
    assert 'kafka_svc = kafka("kafka")' in text  # `kafka` is the helper's name
    assert "zookeeper" not in text.split("# --- needs your attention")[0]
    # every address of another service is faultbox's (through the proxy); other words are left alone
    assert '"DATABASE_URL": "postgres://shop:secret@" + db.main.addr + "/shop",' in text
    assert '"REDIS_URL": "redis://:hunter2@" + cache.main.addr + "/0",' in text
    assert '"BROKERS": kafka_svc.main.addr + "," + kafka_svc.main.addr,' in text
    assert '"DB_HOST": db.main.proxy_host,' in text and '"DB_PORT": db.main.proxy_port,' in text
    assert '"DB_NAME": "db",' in text and '"GREETING": "hello db",' in text
    assert "depends_on = [db, cache, kafka_svc]," in text
    # the app: its published port, an HTTP healthcheck from compose's, a placeholder and a TODO
    assert '"/bin/false", interface("main", "http", 8080),' in text
    assert 'healthcheck = http("127.0.0.1:8080/healthz"),' in text
    assert "# TODO: no container engine runs here" in text
    assert any(n.startswith("api: give the local command that runs it") for n in attention)
    assert any(n.startswith("zookeeper: dropped") for n in attention)
    assert any("listens on 80 in its container; here it must listen on 8080" in n for n in attention)
    # a test per service, and a fault on the app's database
    for name in ("test_db_answers", "test_cache_answers", "test_api_answers"):
        assert f"def {name}():" in text
    assert "rules = [drop()]," in text and 'fault_scenario("api_answers_without_db",' in text
    assert text.rstrip().splitlines()[-1].startswith("#")  # the list of what needs attention closes it


def test_start_order_follows_depends_on(tmp_path: Path) -> None:
    text, _ = _spec(
        tmp_path,
        """
        services:
          web: {image: nginx, depends_on: [db], ports: ["8000:80"]}
          db: {image: postgres:15}
        """,
    )
    assert text.index('db = postgres("db")') < text.index('web = service("web",')
    with pytest.raises(ComposeError, match="depends_on has a cycle: a -> b -> a"):
        translate(
            _compose("services:\n  a: {image: x, depends_on: [b]}\n  b: {image: y, depends_on: [a]}\n"), ".", "c.yml"
        )


def test_a_command_that_runs_here_is_used(tmp_path: Path) -> None:
    (tmp_path / "worker").mkdir()
    (tmp_path / "worker" / "main.py").write_text("print(1)\n")
    (tmp_path / "worker" / "Dockerfile").write_text('FROM python:3.12\nCMD ["python3", "main.py"]\n')
    text, attention = _spec(
        tmp_path,
        """
        services:
          worker: {build: ./worker}
          other: {build: ./worker, command: ["/app/bin/run", "--fast"]}
        """,
    )
    assert 'worker = service("worker",\n    "python3",\n    args = ["main.py"],\n    cwd = "worker",' in text
    assert any(n.startswith("worker: runs `python3 main.py` in worker/ (its Dockerfile's CMD)") for n in attention)
    assert 'other = service("other",\n    "/bin/false",' in text
    # no test can reach a service without an interface: the spec still has one, so that it is a spec
    assert 'def test_worker_starts():\n    assert_eventually(type = "service_ready", service = "worker")' in text


def test_service_names_that_are_builtins_get_other_variables(tmp_path: Path) -> None:
    text, _ = _spec(
        tmp_path,
        """
        services:
          redis: {image: redis:7}
          postgres: {image: postgres:15}
          http: {image: nginx, ports: ["8090:80"], depends_on: [redis, postgres]}
        """,
    )
    assert 'redis_svc = redis("redis")' in text and 'postgres_svc = postgres("postgres")' in text
    assert 'http_svc = service("http",' in text and "depends_on = [redis_svc, postgres_svc]," in text
