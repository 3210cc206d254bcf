"""The chart's gateway CORS allow-list (values.yaml gateway.corsOrigins, issue 18): none by
default, listed origins rendered into the same map as `make run`'s gateway, a malformed origin
refused by `helm template`, and the rendered config valid for nginx."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from deploy import chart
from tests.deploy.test_chart import CHART, helm, of_kind, render
from tests.plugins.infra import unavailable

ORIGINS = '["https://app.example.org","http://localhost:5173"]'


def _gateway_config(*extra: str) -> dict[str, str]:
    data: dict[str, str] = of_kind(render(*extra), "ConfigMap")["taper-gateway"]["data"]
    return data


def test_no_cors_by_default() -> None:
    data = _gateway_config()
    assert "$http_origin;" not in data["nginx.conf"].split("$taper_cors_origin {", 1)[1][:200]
    assert "Vary Origin" not in data["server-body.conf"]


def test_listed_origins_are_in_the_gateways_map(tmp_path: Path) -> None:
    data = _gateway_config("--set-json", f"gateway.corsOrigins={ORIGINS}")
    cors_map = data["nginx.conf"].split("$taper_cors_origin {", 1)[1].split("}", 1)[0]
    assert re.findall(r'"([^"]+)" \$http_origin;', cors_map) == [
        "https://app.example.org",
        "http://localhost:5173",
    ]
    assert "add_header Vary Origin always;" in data["server-body.conf"]
    from deploy.localstack.gateway import GatewayLaunchError, find_nginx

    try:
        nginx = find_nginx(install=False)
    except GatewayLaunchError as exc:
        unavailable(f"nginx not found: {exc}")
    for file_name, text in data.items():
        text = text.replace(chart.CONFIG_DIR, str(tmp_path))
        text = re.sub(r"server taper-[a-z-]+:(\d+);", r"server 127.0.0.1:\1;", text)
        (tmp_path / file_name).write_text(text)
    done = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_a_malformed_origin_is_refused() -> None:
    for bad in ('["*"]', '["https://app.example.org/path"]', '["https://a\\" $x; }"]'):
        done = subprocess.run(
            [helm(), "template", "taper", str(CHART), "--set-json", f"gateway.corsOrigins={bad}"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode != 0, bad
        assert "gateway.corsOrigins" in done.stderr, done.stderr
