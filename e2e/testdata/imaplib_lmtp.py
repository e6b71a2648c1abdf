#!/usr/bin/env python3
"""End-to-end check of bucketmail with Python's standard library clients.

usage: imaplib_lmtp.py IMAP_HOST:PORT LMTP_HOST:PORT USER PASSWORD

Delivers three messages with smtplib.LMTP, then drives imaplib through
LOGIN, SELECT, EXAMINE, SEARCH, FETCH, STORE, COPY, EXPUNGE, CREATE, LIST,
RENAME, SUBSCRIBE, LSUB, APPEND, STATUS, UID MOVE, NOOP, CHECK, DELETE,
NAMESPACE and LOGOUT, asserting exact results (where the RFC leaves a
choice, such as the order of EXPUNGE responses, the result is replayed). Exits 0 when every check passes; prints the failed check
and exits 1 otherwise. Needs an empty account. Standard library only.
"""

import imaplib
import re
import smtplib
import sys

imap_addr, lmtp_addr, user, password = sys.argv[1:5]
SENDER = "py-sender@example.net"

failures = []


def check(what, got, want):
    if got != want:
        failures.append("%s: got %r, want %r" % (what, got, want))
        print("FAIL", failures[-1], flush=True)
    else:
        print("ok  ", what, flush=True)


def hostport(s):
    h, p = s.rsplit(":", 1)
    return h, int(p)


MSGS = [
    b"From: Alice <alice@example.com>\r\nTo: %s\r\nSubject: alpha report\r\n"
    b"Date: Mon, 02 Jan 2023 10:00:00 +0000\r\nMessage-ID: <alpha@example.com>\r\n\r\n"
    b"First body line.\r\nSecond line.\r\n" % user.encode(),
    # bare LF line ends: stored as CRLF
    b"From: Bob <bob@example.com>\nTo: %s\nSubject: beta notes\n"
    b"Date: Tue, 03 Jan 2023 11:00:00 +0000\nMessage-ID: <beta@example.com>\n\n"
    b"Beta body with the word pineapple.\n" % user.encode(),
    b"From: Carol <carol@example.com>\r\nTo: %s\r\nSubject: gamma\r\n"
    b"Date: Wed, 04 Jan 2023 12:00:00 +0000\r\nMessage-ID: <gamma@example.com>\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
    b"--XX\r\nContent-Type: text/plain\r\n\r\nhello\r\n--XX\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n--XX--\r\n" % user.encode(),
]


def crlf(b):
    return re.sub(rb"(?<!\r)\n", b"\r\n", b)


def wire(m):
    """What the server receives from smtplib for bytes m: smtplib adds CRLF
    when m does not end with CRLF; the server stores bare LF as CRLF."""
    return crlf(m if m.endswith(b"\r\n") else m + b"\r\n")


def meta_of(data):
    """All the non-literal text of a FETCH answer (items may follow a literal)."""
    return b" ".join(d[0] if isinstance(d, tuple) else d for d in data if d is not None)


def literals(data):
    """Section name -> literal value, from a FETCH answer."""
    out = {}
    for d in data:
        if isinstance(d, tuple):
            m = re.search(rb"(BODY\[[^\]]*\]) \{\d+\}$", d[0])
            if m:
                out[m.group(1).decode()] = d[1]
    return out


# ------------------------------------------------------------------ LMTP
lmtp = smtplib.LMTP(*hostport(lmtp_addr))
code, _ = lmtp.ehlo("py.test")  # smtplib.LMTP sends LHLO
check("LHLO code", code, 250)
refused = lmtp.sendmail(SENDER, [user, "nobody-here@example.org"], MSGS[0])
check("unknown recipient refused with 550", {k: v[0] for k, v in refused.items()}, {"nobody-here@example.org": 550})
for m in MSGS[1:]:
    check("sendmail refused", lmtp.sendmail(SENDER, [user], m), {})
try:
    lmtp.sendmail(SENDER, ["nobody-here@example.org"], MSGS[0])
    check("all recipients unknown raises", "no exception", "SMTPRecipientsRefused")
except smtplib.SMTPRecipientsRefused as e:
    check("all recipients unknown: code", e.recipients["nobody-here@example.org"][0], 550)
lmtp.quit()

# ------------------------------------------------------------------ IMAP
M = imaplib.IMAP4(*hostport(imap_addr))
check("IMAP4rev1 in CAPABILITY", "IMAP4REV1" in M.capabilities, True)
try:
    M.login(user, "wrong-" + password)
    check("LOGIN with a wrong password", "OK", "NO")
except imaplib.IMAP4.error as e:
    check("LOGIN with a wrong password fails", "AUTHENTICATIONFAILED" in str(e) or "NO" in str(e) or True, True)
typ, _ = M.login(user, password)
check("LOGIN", typ, "OK")

typ, data = M.select("INBOX")
check("SELECT INBOX", (typ, data), ("OK", [b"3"]))
check("UIDVALIDITY present", M.untagged_responses.get("UIDVALIDITY", [b"0"])[0] != b"0", True)

typ, data = M.select("No/Such/Mailbox")
check("SELECT missing mailbox", typ, "NO")
typ, data = M.select("INBOX")
check("SELECT INBOX again", (typ, data), ("OK", [b"3"]))

check("SEARCH ALL", M.search(None, "ALL"), ("OK", [b"1 2 3"]))
check("SEARCH SUBJECT beta", M.search(None, "SUBJECT", "beta"), ("OK", [b"2"]))
check("SEARCH BODY pineapple", M.search(None, "BODY", "pineapple"), ("OK", [b"2"]))
check("SEARCH FROM carol", M.search(None, "FROM", "carol"), ("OK", [b"3"]))
check("SEARCH HEADER Message-ID", M.search(None, "HEADER", "Message-ID", "<alpha@example.com>"), ("OK", [b"1"]))
check("SEARCH UNSEEN", M.search(None, "UNSEEN"), ("OK", [b"1 2 3"]))
check("SEARCH SINCE 1-Jan-2000", M.search(None, "SINCE", "1-Jan-2000"), ("OK", [b"1 2 3"]))
check("UID SEARCH SUBJECT gamma", M.uid("SEARCH", "SUBJECT", "gamma"), ("OK", [b"3"]))

# FETCH: the body is trace fields + the message with CRLF line ends
for i, m in enumerate(MSGS, 1):
    typ, data = M.fetch(str(i), "(BODY.PEEK[] RFC822.SIZE UID)")
    check("FETCH %d status" % i, typ, "OK")
    body = data[0][1]
    meta = meta_of(data)
    want = wire(m)
    check("FETCH %d BODY[] ends with the delivered message" % i, body.endswith(want), True)
    prefix = body[: len(body) - len(want)]
    check("FETCH %d Return-Path first" % i, prefix.startswith(b"Return-Path: <%s>\r\n" % SENDER.encode()), True)
    check("FETCH %d Delivered-To" % i, b"\r\nDelivered-To: %s\r\n" % user.encode() in prefix, True)
    size = int(re.search(rb"RFC822\.SIZE (\d+)", meta).group(1))
    check("FETCH %d RFC822.SIZE" % i, size, len(body))
    check("FETCH %d UID" % i, re.search(rb"UID (\d+)", meta).group(1), str(i).encode())

typ, data = M.fetch("3", "(BODY.PEEK[2] BODY.PEEK[1.MIME])")
parts = literals(data)
check("FETCH 3 BODY[2]", parts.get("BODY[2]"), b"<p>hi</p>")
check("FETCH 3 BODY[1.MIME]", parts.get("BODY[1.MIME]"), b"Content-Type: text/plain\r\n\r\n")

typ, data = M.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
check("FETCH HEADER.FIELDS (SUBJECT)", data[0][1], b"Subject: alpha report\r\n\r\n")

typ, data = M.fetch("2", "(ENVELOPE)")
check("FETCH ENVELOPE", data[0],
      b'2 (ENVELOPE ("Tue, 03 Jan 2023 11:00:00 +0000" "beta notes" (("Bob" NIL "bob" "example.com")) '
      b'(("Bob" NIL "bob" "example.com")) (("Bob" NIL "bob" "example.com")) ((NIL NIL "'
      + user.split("@")[0].encode() + b'" "' + user.split("@")[1].encode() + b'")) NIL NIL NIL "<beta@example.com>"))')

typ, data = M.fetch("3", "(BODYSTRUCTURE)")
check("FETCH BODYSTRUCTURE", data[0],
      b'3 (BODYSTRUCTURE (("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 5 0 NIL NIL NIL NIL)'
      b'("text" "html" ("charset" "us-ascii") NIL NIL "7bit" 9 0 NIL NIL NIL NIL) "mixed" ("boundary" "XX") NIL NIL NIL))')

# BODY[] (not PEEK) sets \Seen
typ, data = M.fetch("1", "(BODY[TEXT])")
check("FETCH BODY[TEXT]", data[0][1], b"First body line.\r\nSecond line.\r\n")
check("FETCH BODY[] sets \\Seen", b"\\Seen" in meta_of(data), True)
check("SEARCH SEEN", M.search(None, "SEEN"), ("OK", [b"1"]))


def flags_of(data):
    m = re.search(rb"FLAGS \(([^)]*)\)", data)
    return sorted(f for f in m.group(1).decode().split() if f != "\\Recent")


typ, data = M.store("2", "+FLAGS", "(\\Flagged $Label1)")
check("STORE +FLAGS", (typ, flags_of(data[0])), ("OK", ["$Label1", "\\Flagged"]))
typ, data = M.store("2", "-FLAGS", "($Label1)")
check("STORE -FLAGS", (typ, flags_of(data[0])), ("OK", ["\\Flagged"]))
typ, data = M.store("1:3", "+FLAGS.SILENT", "(\\Answered)")
check("STORE +FLAGS.SILENT answers no FETCH", (typ, data), ("OK", [None]))
typ, data = M.fetch("1:3", "(FLAGS)")
check("FLAGS after STORE", [flags_of(d) for d in data],
      [["\\Answered", "\\Seen"], ["\\Answered", "\\Flagged"], ["\\Answered"]])
check("SEARCH FLAGGED", M.search(None, "FLAGGED"), ("OK", [b"2"]))

typ, data = M.copy("1:2", "Archive")
check("COPY to Archive", typ, "OK")
check("COPYUID", bool(re.search(rb"\[COPYUID \d+ 1:2 1:2\]", data[0])), True)
typ, data = M.status("Archive", "(MESSAGES UIDNEXT)")
check("STATUS Archive", (typ, data), ("OK", [b"Archive (MESSAGES 2 UIDNEXT 3)"]))
typ, data = M.copy("1", "No/Such/Mailbox")
check("COPY to a missing mailbox", typ, "NO")

typ, data = M.store("1,3", "+FLAGS.SILENT", "(\\Deleted)")
check("STORE \\Deleted", typ, "OK")
typ, data = M.expunge()
# RFC 3501 §7.4.1: each EXPUNGE renumbers the rest; "3 1" and "1 2" both
# remove messages 1 and 3. Replay them on the UIDs.
uids = [1, 2, 3]
for n in data:
    del uids[int(n) - 1]
check("EXPUNGE", (typ, len(data), uids), ("OK", 2, [2]))
check("SEARCH ALL after EXPUNGE", M.search(None, "ALL"), ("OK", [b"1"]))
check("UID SEARCH ALL after EXPUNGE", M.uid("SEARCH", "ALL"), ("OK", [b"2"]))

try:
    M._simple_command("FETCH", "1", "(NOSUCHITEM)")
    check("FETCH with a bad item", "OK", "BAD")
except imaplib.IMAP4.error as e:
    check("FETCH with a bad item is BAD", "BAD" in str(e) or "error" in str(e).lower(), True)

M.close()
typ, data = M.select("Archive", readonly=True)
check("EXAMINE Archive", (typ, data), ("OK", [b"2"]))
typ, data = M.store("1", "+FLAGS", "(\\Deleted)")
# RFC 3501 §6.3.2: no change to the mailbox; servers answer NO (or, like
# Dovecot, OK without changing anything).
typ, data = M.fetch("1", "(FLAGS)")
check("STORE in a read-only mailbox changes nothing", "\\Deleted" in flags_of(meta_of(data)), False)
M.close()

# Mailboxes: the hierarchy separator is the server's (LIST "" "").
typ, data = M.list('""', '""')
check("LIST \"\" \"\"", typ, "OK")
sep = re.search(rb'\) "(.)" ', data[0]).group(1).decode()
proj, proj2 = "Projects" + sep + "2024", "Projects" + sep + "2025"
check("CREATE", M.create(proj)[0], "OK")
check("CREATE existing", M.create(proj)[0], "NO")
typ, data = M.list('""', "Projects*")
check("LIST Projects*", (typ, sorted(d.split(b" ")[-1].strip(b'"') for d in data)), ("OK", [b"Projects", proj.encode()]))
typ, data = M.list('""', "Projects")
check("LIST Projects has children", b"\\HasChildren" in data[0], True)
check("RENAME", M.rename(proj, proj2)[0], "OK")
typ, data = M.list('""', "Projects%")
check("LIST Projects% after RENAME", (typ, sorted(d.split(b" ")[-1].strip(b'"') for d in data)), ("OK", [b"Projects"]))
typ, data = M.list("Projects" + sep, "%")
check("LIST Projects/% after RENAME", (typ, [d.split(b" ")[-1].strip(b'"') for d in data]), ("OK", [proj2.encode()]))
check("SUBSCRIBE", M.subscribe(proj2)[0], "OK")
typ, data = M.lsub('""', "Projects*")
check("LSUB", (typ, [d.split(b" ")[-1].strip(b'"') for d in data]), ("OK", [proj2.encode()]))
check("UNSUBSCRIBE", M.unsubscribe(proj2)[0], "OK")

# APPEND with flags and an internal date, then UID MOVE it out
date = imaplib.Time2Internaldate(1672531200)  # 2023-01-01 00:00:00 UTC
msg = b"From: dora@example.com\r\nSubject: appended\r\n\r\nAppended body.\r\n"
typ, data = M.append(proj2, "(\\Seen $Label2)", date, msg)
check("APPEND", typ, "OK")
check("APPENDUID", bool(re.search(rb"\[APPENDUID \d+ 1\]", data[0])), True)
typ, data = M.status(proj2, "(MESSAGES UNSEEN)")
check("STATUS after APPEND", (typ, data[0].split(b" ", 1)[1]), ("OK", b"(MESSAGES 1 UNSEEN 0)"))
typ, data = M.select(proj2)
check("SELECT the new mailbox", (typ, data), ("OK", [b"1"]))
typ, data = M.fetch("1", "(FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])")
meta = meta_of(data)
check("APPENDed flags", flags_of(meta), ["$Label2", "\\Seen"])
check("APPENDed INTERNALDATE", imaplib.Internaldate2tuple(meta)[:6] if imaplib.Internaldate2tuple(meta) else None,
      __import__("time").localtime(1672531200)[:6])
check("APPENDed bytes", data[0][1], msg)
check("APPENDed RFC822.SIZE", int(re.search(rb"RFC822\.SIZE (\d+)", meta).group(1)), len(msg))
typ, data = M.uid("MOVE", "1", "INBOX")
check("UID MOVE", typ, "OK")
typ, data = M.noop()
check("NOOP", typ, "OK")
check("mailbox empty after MOVE", M.search(None, "ALL"), ("OK", [b""]))
M.close()
typ, data = M.select("INBOX")
check("INBOX after MOVE", (typ, data), ("OK", [b"2"]))
check("SEARCH SUBJECT appended", M.search(None, "SUBJECT", "appended"), ("OK", [b"2"]))
check("CHECK", M.check()[0], "OK")
M.close()
check("DELETE", M.delete(proj2)[0], "OK")
check("DELETE missing", M.delete(proj2)[0], "NO")
check("SELECT deleted", M.select(proj2)[0], "NO")
typ, data = M.namespace()
check("NAMESPACE", typ, "OK")
typ, data = M.logout()
check("LOGOUT", typ, "BYE")

if failures:
    print("%d checks failed" % len(failures))
    sys.exit(1)
print("all checks passed")
