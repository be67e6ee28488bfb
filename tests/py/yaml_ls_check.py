"""Drive Red Hat's yaml-language-server (the one VS Code, Neovim and Helix use) over stdio
with workflow files that name the schema in their first line, as the README says, and print
what it answers as JSON: diagnostics per file and completion labels.

usage: yaml_ls_check.py SERVER_JS DIR FILE... [--complete FILE:LINE:COL]...
"""

import json
import os
import subprocess
import sys
import time


class Client:
    def __init__(self, argv):
        self.p = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self.next_id = 0
        self.diagnostics = {}

    def send(self, msg):
        body = json.dumps(msg).encode()
        self.p.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.p.stdin.flush()

    def read(self):
        length = None
        while True:
            line = self.p.stdout.readline()
            if not line:
                raise SystemExit("the language server exited")
            line = line.strip()
            if not line:
                break
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        return json.loads(self.p.stdout.read(length))

    def handle(self, msg):
        """Answer the server's own requests; keep its diagnostics."""
        if msg.get("method") == "textDocument/publishDiagnostics":
            self.diagnostics[msg["params"]["uri"]] = msg["params"]["diagnostics"]
        elif "id" in msg and "method" in msg:
            if msg["method"] == "workspace/configuration":
                result = [
                    {"validate": True, "completion": True, "hover": True}
                    for _ in msg["params"]["items"]
                ]
            else:
                result = None
            self.send({"jsonrpc": "2.0", "id": msg["id"], "result": result})

    def request(self, method, params):
        self.next_id += 1
        rid = self.next_id
        self.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        while True:
            msg = self.read()
            if msg.get("id") == rid and "method" not in msg:
                if "error" in msg:
                    raise SystemExit(f"{method}: {msg['error']}")
                return msg["result"]
            self.handle(msg)

    def notify(self, method, params):
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def wait_diagnostics(self, uri, timeout=30):
        end = time.time() + timeout
        while uri not in self.diagnostics:
            if time.time() > end:
                raise SystemExit(f"no diagnostics for {uri}")
            self.handle(self.read())
        return self.diagnostics[uri]


def main():
    server, root = sys.argv[1], os.path.abspath(sys.argv[2])
    files, completions = [], []
    args = sys.argv[3:]
    while args:
        a = args.pop(0)
        if a == "--complete":
            completions.append(args.pop(0))
        else:
            files.append(a)
    c = Client(["node", server, "--stdio"])
    root_uri = "file://" + root
    c.request(
        "initialize",
        {
            "processId": os.getpid(),
            "rootUri": root_uri,
            "capabilities": {"workspace": {"configuration": True}},
            "workspaceFolders": [{"uri": root_uri, "name": "w"}],
        },
    )
    c.notify("initialized", {})
    c.notify(
        "workspace/didChangeConfiguration",
        {"settings": {"yaml": {"validate": True, "completion": True, "schemaStore": {"enable": False}}}},
    )
    out = {"diagnostics": {}, "completions": {}}
    for f in files:
        path = os.path.join(root, f)
        uri = "file://" + path
        with open(path) as fh:
            text = fh.read()
        c.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": uri, "languageId": "yaml", "version": 1, "text": text}},
        )
        diags = c.wait_diagnostics(uri)
        out["diagnostics"][f] = [
            {"line": d["range"]["start"]["line"] + 1, "message": d["message"]} for d in diags
        ]
    for spec in completions:
        f, line, col = spec.rsplit(":", 2)
        uri = "file://" + os.path.join(root, f)
        result = c.request(
            "textDocument/completion",
            {"textDocument": {"uri": uri}, "position": {"line": int(line) - 1, "character": int(col)}},
        )
        items = result.get("items", []) if isinstance(result, dict) else (result or [])
        out["completions"][spec] = sorted(i["label"] for i in items)
    print(json.dumps(out))
    c.p.kill()


if __name__ == "__main__":
    main()
