#!/usr/bin/env python3
"""Record Dovecot's IMAP answers for every corpus message (a reference dump).

Throwaway tool for developers; the tests do not run it. It starts Debian's
Dovecot on loopback with a private config, APPENDs every corpus message (in
the order of internal/testutil/corpus.Walk(t, "", ...), bare LF turned into
CRLF exactly like corpus.CRLF) into INBOX and writes one JSON object per
message to OUT/dump.jsonl. The format is described in OUT/README.md.

usage: scripts/dovecot-dump.py [--corpus DIR] [--out DIR] [--limit N]
Must run as root (Dovecot drops to the mail user).
"""

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

# ---------------------------------------------------------------- corpus walk


def split_mbox(data):
    """Same rule as corpus.SplitMbox."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    out = []
    cur = None
    prev_blank = True
    lines = data.split(b"\n")
    # bytes.SplitAfter keeps the "\n"; rebuild that.
    pieces = [l + b"\n" for l in lines[:-1]]
    if lines[-1]:
        pieces.append(lines[-1])
    for line in pieces:
        if prev_blank and line.startswith(b"From "):
            if cur is not None:
                out.append(bytes(cur))
            cur = bytearray()
        elif cur is not None:
            cur += line
        prev_blank = len(line.rstrip(b"\r\n")) == 0
    if cur is not None:
        out.append(bytes(cur))
    return out


def walk(root, sub=""):
    """Yield (id, raw) in the order of Go's filepath.WalkDir (lexical)."""
    def rec(path):
        for name in sorted(os.listdir(path), key=lambda s: s.encode()):
            p = os.path.join(path, name)
            if os.path.isdir(p):
                yield from rec(p)
                continue
            rel = os.path.relpath(p, root)
            if name.endswith(".eml"):
                with open(p, "rb") as f:
                    yield rel, f.read()
            elif name.endswith(".mbox"):
                with open(p, "rb") as f:
                    for i, m in enumerate(split_mbox(f.read())):
                        yield "%s#%d" % (rel, i), m
    yield from rec(os.path.join(root, sub) if sub else root)


def crlf(raw):
    """Same as corpus.CRLF: every LF not preceded by CR becomes CRLF."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", raw)

# ---------------------------------------------------------------- dovecot


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start_dovecot(tmp):
    imap_port, lmtp_port = free_port(), free_port()
    for d in ("run", "state", "log", "mail"):
        os.makedirs(os.path.join(tmp, d), exist_ok=True)
    os.chmod(tmp, 0o755)
    shutil.chown(os.path.join(tmp, "mail"), "mail", "mail")
    with open(os.path.join(tmp, "passwd"), "w") as f:
        f.write("dump@example.org:{PLAIN}dump-password::::::\n")
    conf = os.path.join(tmp, "dovecot.conf")
    with open(conf, "w") as f:
        f.write(f"""
base_dir = {tmp}/run
state_dir = {tmp}/state
log_path = {tmp}/log/dovecot.log
instance_name = bucketmail-dump-{os.getpid()}
listen = 127.0.0.1
protocols = imap lmtp
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 8
last_valid_uid = 8
mail_location = maildir:{tmp}/mail/%u/Maildir
mail_save_crlf = yes
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {tmp}/passwd
}}
userdb {{
  driver = static
  args = uid=mail gid=mail home={tmp}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
protocol lmtp {{
  auth_username_format = %u
}}
""")
    subprocess.run(["dovecot", "-c", conf], check=True)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", imap_port), 0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    return conf, imap_port

# ---------------------------------------------------------------- raw IMAP


class Conn:
    """Minimal IMAP client that keeps responses byte-exact."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.f = self.s.makefile("rb")
        self.n = 0
        self.greeting = self.f.readline()

    def read_response(self):
        """One response line with literals inlined: bytes without final CRLF."""
        buf = bytearray()
        while True:
            line = self.f.readline()
            if not line:
                raise EOFError("connection closed")
            buf += line
            s = line.rstrip(b"\r\n")
            if s.endswith(b"}") and b"{" in s:
                n = int(s[s.rindex(b"{") + 1:-1].rstrip(b"+"))
                buf += self.f.read(n)
                continue
            return bytes(buf[:-2] if buf.endswith(b"\r\n") else buf)

    def cmd(self, *parts):
        """parts: bytes (sent as is) or ('lit', bytes) (synchronising literal)."""
        self.n += 1
        tag = b"a%d" % self.n
        out = tag + b" "
        for p in parts:
            if isinstance(p, tuple):
                lit = p[1]
                self.s.sendall(out + b"{%d}\r\n" % len(lit))
                out = b""
                r = self.read_response()
                if not r.startswith(b"+"):
                    # the server refused the literal: it answered tagged
                    return [], r
                self.s.sendall(lit)
            else:
                out += p
        self.s.sendall(out + b"\r\n")
        untagged = []
        while True:
            r = self.read_response()
            if r.startswith(tag + b" "):
                return untagged, r
            untagged.append(r)

# ---------------------------------------------------------------- sexp parser


class P:
    def __init__(self, b, i=0):
        self.b, self.i = b, i

    def ws(self):
        while self.i < len(self.b) and self.b[self.i] == 32:
            self.i += 1

    def value(self):
        """Returns ('list', [...], start, end) | ('str', bytes|None, start, end) | ('atom', bytes, s, e)."""
        self.ws()
        b, st = self.b, self.i
        c = b[self.i]
        if c == ord("("):
            self.i += 1
            items = []
            while True:
                self.ws()
                if b[self.i] == ord(")"):
                    self.i += 1
                    return ("list", items, st, self.i)
                items.append(self.value())
        if c == ord('"'):
            self.i += 1
            out = bytearray()
            while b[self.i] != ord('"'):
                if b[self.i] == ord("\\"):
                    self.i += 1
                out.append(b[self.i])
                self.i += 1
            self.i += 1
            return ("str", bytes(out), st, self.i)
        if c == ord("{"):
            j = b.index(b"}", self.i)
            n = int(b[self.i + 1:j].rstrip(b"+"))
            start = j + 3  # "}\r\n"
            self.i = start + n
            return ("str", b[start:start + n], st, self.i)
        j = self.i
        depth = 0
        while j < len(b):
            ch = b[j]
            if ch == ord("["):
                depth += 1
            elif ch == ord("]"):
                depth -= 1
            elif depth == 0 and ch in (32, ord("("), ord(")")):
                break
            j += 1
        a = b[self.i:j]
        self.i = j
        if a.upper() == b"NIL":
            return ("str", None, st, j)
        return ("atom", a, st, j)


def fetch_items(line):
    """'* N FETCH (K V K V ...)' -> dict key(bytes upper) -> (value, raw bytes)."""
    i = line.index(b"FETCH (") + len(b"FETCH ")
    p = P(line, i)
    v = p.value()
    items = v[1]
    d = {}
    for k in range(0, len(items) - 1, 2):
        key = items[k][1].upper()
        val = items[k + 1]
        d[key] = (val, line[val[2]:val[3]])
    return d


def part_paths(bs, prefix=""):
    """Part specifiers of a BODYSTRUCTURE value, depth first, per RFC 3501 6.4.5."""
    items = bs[1]
    if items and items[0][0] == "list":  # multipart
        out = []
        n = 0
        for it in items:
            if it[0] != "list":
                break
            n += 1
            path = "%s%d" % (prefix, n)
            out.append((path, it))
            out += part_children(path, it)
        return out
    return [("1", bs)] + part_children("1", bs)


def part_children(path, bs):
    items = bs[1]
    if items and items[0][0] == "list":  # multipart part: its children
        return part_paths(bs, path + ".")
    t = (items[0][1] or b"").upper() if items else b""
    s = (items[1][1] or b"").upper() if len(items) > 1 else b""
    if t == b"MESSAGE" and s in (b"RFC822", b"GLOBAL") and len(items) > 8 and items[8][0] == "list":
        inner = items[8]
        if inner[1] and inner[1][0][0] == "list":
            return part_paths(inner, path + ".")
        return [(path + ".1", inner)] + part_children(path + ".1", inner)
    return []

# ---------------------------------------------------------------- main


def b64(b):
    return base64.b64encode(b).decode() if b is not None else None


def txt(b):
    return b.decode("utf-8", "replace") if b is not None else None


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=os.path.join(here, "..", "..", "shared", "corpus"))
    ap.add_argument("--out", default="/work/notes/dovecot-dump")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--max-sections", type=int, default=100000)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    tmp = tempfile.mkdtemp(prefix="bm-dovecot-dump-")
    conf, port = start_dovecot(tmp)
    refused = []
    try:
        c = Conn(port)
        _, r = c.cmd(b"LOGIN dump@example.org dump-password")
        assert b"OK" in r, r
        msgs = []
        for mid, raw in walk(args.corpus):
            msgs.append((mid, crlf(raw)))
            if args.limit and len(msgs) >= args.limit:
                break
        uid_of = {}
        for mid, data in msgs:
            unt, r = c.cmd(b"APPEND INBOX () ", ("lit", data))
            if b" OK " not in r[:20]:
                refused.append({"id": mid, "size": len(data), "response": txt(r)})
                # the connection may be out of sync after a refused literal
                if not r.startswith(b"a"):
                    c = Conn(port)
                    c.cmd(b"LOGIN dump@example.org dump-password")
                continue
            # [APPENDUID uidvalidity uid]
            k = r.index(b"[APPENDUID ")
            uid = int(r[k:].split(b"]")[0].split()[2])
            uid_of[mid] = uid
        c.cmd(b"SELECT INBOX")
        with open(os.path.join(args.out, "dump.jsonl"), "wb") as out:
            for mid, data in msgs:
                if mid not in uid_of:
                    continue
                uid = uid_of[mid]
                unt, r = c.cmd(b"UID FETCH %d (UID RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY)" % uid)
                fl = [u for u in unt if b" FETCH " in u[:30]]
                assert fl and b" OK " in r, (mid, unt, r)
                d = fetch_items(fl[0])
                rec = {"uid": uid, "id": mid, "appended_size": len(data),
                       "appended_sha256": hashlib.sha256(data).hexdigest(),
                       "rfc822_size": int(d[b"RFC822.SIZE"][1])}
                for key, name in ((b"ENVELOPE", "envelope"), (b"BODYSTRUCTURE", "bodystructure"), (b"BODY", "body")):
                    raw = d[key][1] if key in d else None
                    rec[name] = txt(raw)
                    rec[name + "_b64"] = b64(raw)
                paths = [p for p, _ in part_paths(d[b"BODYSTRUCTURE"][0])] if b"BODYSTRUCTURE" in d else []
                rec["parts"] = paths
                secs = ["", "HEADER", "TEXT"]
                for p in paths[: args.max_sections]:
                    secs += [p, p + ".MIME"]
                rec["sections_truncated"] = len(paths) > args.max_sections
                sections = []
                # one FETCH per batch of sections
                for i in range(0, len(secs), 50):
                    batch = secs[i:i + 50]
                    q = b" ".join(b"BODY.PEEK[%s]" % s.encode() for s in batch)
                    unt, r = c.cmd(b"UID FETCH %d (%s)" % (uid, q))
                    if b" OK " not in r:
                        sections.append({"error": txt(r), "batch": batch})
                        continue
                    got = {}
                    for u in unt:
                        if b" FETCH " not in u[:30]:
                            continue
                        for key, (val, rawv) in fetch_items(u).items():
                            if key.startswith(b"BODY["):
                                got[key[5:key.index(b"]")].decode()] = val[1]
                    for s in batch:
                        v = got.get(s.upper(), "missing")
                        if v == "missing":
                            sections.append({"section": s, "missing": True})
                        elif v is None:
                            sections.append({"section": s, "nil": True})
                        else:
                            sections.append({"section": s, "size": len(v),
                                             "sha256": hashlib.sha256(v).hexdigest()})
                rec["sections"] = sections
                out.write(json.dumps(rec, ensure_ascii=True).encode() + b"\n")
        with open(os.path.join(args.out, "refused.json"), "w") as f:
            json.dump(refused, f, indent=1)
        print("appended %d, refused %d" % (len(uid_of), len(refused)), file=sys.stderr)
    finally:
        subprocess.run(["dovecot", "-c", conf, "stop"])
        time.sleep(0.5)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
