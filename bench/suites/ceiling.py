"""How fast the load generator itself goes: against a node HTTP server that answers a fixed JSON body.

node's http module on the server core answers far faster than any target here, so the rate reached is
the generator's ceiling (one core, asyncio). Measured for this raw HTTP/1.1 client, which every
scenario uses, and for httpx (one AsyncClient, one connection per virtual client) to show why not httpx.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import httpx

from bench.harness.http1 import FORM, Links
from bench.harness.load import drive
from bench.harness.procstat import TreeAccounting, machine_busy_seconds
from bench.harness.report import run_line
from bench.harness.runner import Plan
from bench.harness.servers import start_pinned
from bench.harness.stats import Row, Run
from tests.support.postgres import free_port

SERVER = """
const http = require('node:http');
const body = Buffer.from(JSON.stringify({access_token: 'x'.repeat(600), token_type: 'Bearer', expires_in: 300}));
http.createServer((req, res) => {
  if (req.url === '/readyz') { res.end('ok'); return; }
  req.on('data', () => {}).on('end', () => {
    res.writeHead(200, {'content-type': 'application/json', 'content-length': body.length}); res.end(body);
  });
}).listen(Number(process.argv[2]), '127.0.0.1');
"""
FORM_BODY = b"grant_type=refresh_token&refresh_token=" + b"r" * 43


class FixedServer:
    name, store, workers = "node fixed response", "-", "1"

    def __init__(self, port: int) -> None:
        self.ports = [port]
        self.pid = 0

    def server_pids(self) -> list[int]:
        return [self.pid]

    def db_pids(self) -> list[int]:
        return []


async def _raw(port: int, n: int, plan: Plan):
    links = Links([port])

    def client(http):
        async def post() -> bool:
            return (await http.request("POST", "/token", FORM, FORM_BODY)).status == 200
        return post

    try:
        return await drive([client(links.http(i)) for i in range(n)], plan.duration, plan.max_requests)
    finally:
        await links.close()


async def _httpx(port: int, n: int, plan: Plan):
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30) as http:
        async def post() -> bool:
            response = await http.post("/token", content=FORM_BODY,
                                       headers={"content-type": "application/x-www-form-urlencoded"})
            return response.status_code == 200
        return await drive([post] * n, plan.duration, plan.max_requests)


def run(plan: Plan, clients: list[int]) -> list[Row]:
    node = shutil.which("node")
    if node is None:
        print("ceiling: node is not on PATH; skipped")
        return []
    port = free_port()
    directory = Path(tempfile.mkdtemp(prefix="bench-ceiling-"))
    (directory / "server.cjs").write_text(SERVER)
    process = start_pinned([node, str(directory / "server.cjs"), str(port)], {}, directory / "node.log", port,
                           "/readyz")
    target = FixedServer(port)
    target.pid = process.proc.pid
    rows = []
    try:
        for n in clients:
            for name, load in (("generator raw http1", _raw), ("generator httpx", _httpx)):
                row = Row("ceiling", target.name, "-", "1", n, name)
                for number in range(1, plan.repeats + 1):
                    with TreeAccounting([target.pid]) as server:
                        cpu, busy = time.process_time(), machine_busy_seconds()
                        result = asyncio.run(load(port, n, plan))
                        cpu, busy = time.process_time() - cpu, machine_busy_seconds() - busy
                    usage = server.usage()
                    row.runs.append(Run.of(result, usage, None, cpu, busy - cpu - usage.cpu_s))
                    print(run_line(row, number, row.runs[-1]), flush=True)
                rows.append(row)
    finally:
        process.stop()
        shutil.rmtree(directory, ignore_errors=True)
    return rows
