"""The connection filter language, for the TUI's `/` bar and the headless `--match`.

    host 10.0.0.1      net 10.0.0.0/8      net fd00::/8
    port 80            sport 1024-2000     dport 443           (sport: the client's port, dport: the server's)
    state ESTABLISHED  cstate SYN_SENT     sstate close-wait   (either side / client side / server side;
                                                                 ss spellings too: estab, fin-wait-2, syn-recv)
    vlan 100           midstream           ended               zeek REJ
    server 10.0.0.1:443   server 10.0.0.1   client [fd00::1]:5000   client fd00::1   (that side's address[:port])
    suspicious         (an RST out of window, or with a TTL or MAC unlike the sender's other packets)
    name example.com   (either side's host name, learned from DNS/SNI/HTTP Host, is example.com or ends in
                        .example.com; with * or ? a glob on the whole name: `name *.cdn.example.*`)
    problem close_wait (a kind of the problems lens: close_wait, fin_wait_2, unanswered_syn, refused, reset,
                        suspicious_rst, one_way, retransmissions, zero_window, half_open; `problem any`: any kind)
    and, or, not (also &&, ||, &, |, !), parentheses; two terms side by side mean `and`.
    A bare word matches the text of either address or either state: `10.0.0.`, `443`, `wait`; a state's name in
    any spelling (`time-wait`, `estab`) matches that state on either side. Any other word (`hots`, `dport=80`) is
    an error that suggests the keyword meant.

`compile_query(text, lens, names)` returns a predicate over connection rows (engine.records.ConnRow),
`predicate(row, now=None)`, or raises QueryError, whose message says what is wrong and `position` where (0-based
column). `now` is the moment the term `problem KIND` judges at (None: the row's own last packet); the other terms
ignore it.
"""

from __future__ import annotations

import difflib
import fnmatch
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from midstat_tui import query_columns as qc
from midstat_tui.engine.records import ConnRow, format_addr
from midstat_tui.problems import KIND_NAMES, Lens
from midstat_tui.tcp import zeek
from midstat_tui.tcp.states import NAMES, SS_NAMES, parse_state

Predicate = Callable[[ConnRow], bool]

_TOKEN = re.compile(r"\s*(?:(?P<op>\(|\)|&&|\|\||&|\||!)|(?P<word>[^\s()!&|]+))")
_OR = ("or", "||", "|")
_AND = ("and", "&&", "&")
# words a bare word may be part of: the states in every spelling, lower case, '-' read as '_'
_STATE_TEXT = tuple(dict.fromkeys(n.lower().replace("-", "_") for n in (*NAMES, *SS_NAMES)))
_ADDRESS_WORD = re.compile(r"[0-9a-f.:\[\]/]+")
KEYWORDS = ("host", "net", "port", "sport", "dport", "state", "cstate", "sstate", "vlan", "midstream", "ended",
            "suspicious", "zeek", "problem", "server", "client", "name")
FLAGS = {"midstream": qc.with_vec(lambda conn: conn.midstream, qc.flag("midstream")),
         "ended": qc.with_vec(lambda conn: conn.ended is not None, qc.flag("ended")),
         "suspicious": qc.with_vec(lambda conn: conn.rst_alerts > 0, qc.flag("rst_alerts"))}


class QueryError(ValueError):
    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.position = position

    def __str__(self) -> str:
        return f"{self.args[0]} (at column {self.position + 1})"


@dataclass(frozen=True)
class _Token:
    text: str
    pos: int
    op: bool


def _tokenize(text: str) -> list[_Token]:
    tokens = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            if text[pos:].strip() == "":
                break
            raise QueryError(f"unexpected {text[pos]!r}", pos)
        group = "op" if m.group("op") else "word"
        tokens.append(_Token(m.group(group), m.start(group), group == "op"))
        pos = m.end()
    return tokens


# Parentheses and `not`s nested deeper than this are refused: parsing and matching recurse once per level.
MAX_NESTING = 64


class _Parser:
    def __init__(self, text: str, lens: Lens | None = None, names: Names | None = None) -> None:
        self.text = text
        self.lens = lens or Lens()
        self.names = names
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0
        self.used: set[str] = set()     # the keywords the expression uses
        self.bare_state = False         # does a bare word of it match a state?

    def nest(self, tok: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise QueryError(f"parentheses and 'not's nested more than {MAX_NESTING} deep", tok.pos)

    def peek(self) -> _Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> _Token:
        tok = self.peek()
        if tok is None:
            raise QueryError("the expression ends too soon", len(self.text))
        self.i += 1
        return tok

    def parse(self) -> Predicate:
        if not self.tokens:
            return lambda conn: True
        pred = self.or_expr()
        tok = self.peek()
        if tok is not None:
            raise QueryError(f"unexpected {tok.text!r}", tok.pos)
        return pred

    def or_expr(self) -> Predicate:
        parts = [self.and_expr()]
        while (tok := self.peek()) is not None and tok.text.lower() in _OR:
            self.take()
            parts.append(self.and_expr())
        if len(parts) == 1:
            return parts[0]
        if qc.is_timed(*parts):
            timed = qc.timed_parts(parts)
            return qc.timed(lambda conn, now=None: any(p(conn, now) for p in timed), qc.any_of(parts))
        return qc.with_vec(lambda conn: any(p(conn) for p in parts), qc.any_of(parts))

    def and_expr(self) -> Predicate:
        parts = [self.not_expr()]
        while (tok := self.peek()) is not None and tok.text != ")" and tok.text.lower() not in _OR:
            if tok.text.lower() in _AND:
                self.take()
            parts.append(self.not_expr())
        if len(parts) == 1:
            return parts[0]
        if qc.is_timed(*parts):
            timed = qc.timed_parts(parts)
            return qc.timed(lambda conn, now=None: all(p(conn, now) for p in timed), qc.all_of(parts))
        return qc.with_vec(lambda conn: all(p(conn) for p in parts), qc.all_of(parts))

    def not_expr(self) -> Predicate:
        tok = self.peek()
        if tok is not None and tok.text.lower() in ("not", "!"):
            self.nest(self.take())
            inner = self.not_expr()
            self.depth -= 1
            if qc.is_timed(inner):
                return qc.timed(lambda conn, now=None: not inner(conn, now), qc.none_of(inner))
            return qc.with_vec(lambda conn: not inner(conn), qc.none_of(inner))
        return self.atom()

    def atom(self) -> Predicate:
        tok = self.take()
        if tok.text == "(":
            self.nest(tok)
            pred = self.or_expr()
            self.depth -= 1
            close = self.peek()
            if close is None or close.text != ")":
                raise QueryError("a '(' is not closed", tok.pos)
            self.take()
            return pred
        if tok.op or tok.text.lower() in (*_AND, *_OR):
            raise QueryError(f"expected a filter term, found {tok.text!r}", tok.pos)
        word = tok.text.lower()
        if word in FLAGS:
            self.used.add(word)
            return FLAGS[word]
        if word in KEYWORDS:
            arg = self.peek()
            if arg is None or arg.op:
                raise QueryError(f"'{word}' needs a value", arg.pos if arg else len(self.text))
            self.take()
            self.used.add(word)
            if word == "problem":
                return _problem(arg, self.lens)
            if word == "name":
                return _name(arg, self.names)
            return _primitive(word, arg)
        pred = _bare(tok)
        self.bare_state = self.bare_state or _may_be_state(tok.text)
        return pred


def _primitive(word: str, arg: _Token) -> Predicate:
    value = arg.text
    if word == "host":
        try:
            packed = ipaddress.ip_address(value).packed
        except ValueError:
            raise QueryError(f"'{value}' is not an IP address", arg.pos) from None
        return qc.with_vec(lambda conn: conn.c_addr == packed or conn.s_addr == packed,
                           qc.either(qc.exact("client-host", packed), qc.exact("server-host", packed)))
    if word == "net":
        try:
            net = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise QueryError(f"'{value}' is not a network (like 10.0.0.0/8 or fd00::/8)", arg.pos) from None
        size = 4 if net.version == 4 else 16
        low = int(net.network_address)
        high = int(net.broadcast_address)

        def in_net(addr: bytes) -> bool:
            return len(addr) == size and low <= int.from_bytes(addr, "big") <= high

        return qc.with_vec(lambda conn: in_net(conn.c_addr) or in_net(conn.s_addr),
                           qc.either(qc.in_net("client-host", size, low, high),
                                     qc.in_net("server-host", size, low, high)))
    if word in ("port", "sport", "dport"):
        low, high = _port_range(arg)
        client, server = qc.in_range("c_port", low, high), qc.in_range("s_port", low, high)
        if word == "sport":
            return qc.with_vec(lambda conn: low <= conn.c_port <= high, client)
        if word == "dport":
            return qc.with_vec(lambda conn: low <= conn.s_port <= high, server)
        return qc.with_vec(lambda conn: low <= conn.c_port <= high or low <= conn.s_port <= high,
                           qc.either(client, server))
    if word in ("state", "cstate", "sstate"):
        try:
            state = parse_state(value)
        except ValueError:
            raise QueryError(f"'{value}' is not a TCP state (ESTABLISHED, syn-sent, fin-wait-2, ...)",
                             arg.pos) from None
        return _state(word, state)
    if word in ("server", "client"):
        return _endpoint(word, arg)
    if word == "vlan":
        if not value.isdigit() or int(value) > 4095:
            raise QueryError(f"'{value}' is not a VLAN id (0-4095)", arg.pos)
        vid = int(value)
        return qc.with_vec(lambda conn: vid in conn.vlan, qc.keyed("vlan", lambda tags: vid in tags))  # type: ignore
    # zeek
    code = value.upper()
    if code not in zeek.CONN_STATES:
        raise QueryError(f"'{value}' is not a Zeek conn_state ({', '.join(zeek.CONN_STATES)})", arg.pos)
    return qc.with_vec(lambda conn: conn.zeek_state == code, qc.keyed("zeek", code.__eq__))


class Names(Protocol):
    """Host names per connection (engine.names.NameMap, NameLookup)."""

    def row_names(self, row: ConnRow) -> tuple[str | None, str | None]: ...


def _name(arg: _Token, names: Names | None) -> Predicate:
    """`name example.com`: either side's learned name is it or ends in `.example.com` (case does not matter);
    with a glob character (* ? [), the glob matches the whole name. Names change as they are learned, so the term is
    judged row by row against the names known at that moment (no column form)."""
    pattern = arg.text.lower().strip("\"'").strip(".")  # `name ".org"` is `name org`
    if not pattern:
        raise QueryError("'name' needs a host name (example.com) or a glob (*.example.com)", arg.pos)
    if "[" in pattern and "]" not in pattern[pattern.index("[") + 1:]:
        raise QueryError(f"the glob {arg.text!r} opens a '[' it never closes", arg.pos)
    if any(ch in pattern for ch in "*?["):
        def match(name: str | None) -> bool:
            return name is not None and fnmatch.fnmatchcase(name, pattern)
    else:
        dotted = "." + pattern

        def match(name: str | None) -> bool:
            return name is not None and (name == pattern or name.endswith(dotted))

    if names is None:
        return lambda conn: False  # no names learned here

    def either_side(conn: ConnRow) -> bool:
        client, server = names.row_names(conn)
        return match(server) or match(client)

    return either_side


def _state(word: str, state: int) -> Predicate:
    client, server = qc.in_range("cstate", state, state), qc.in_range("sstate", state, state)
    if word == "cstate":
        return qc.with_vec(lambda conn: conn.cstate == state, client)
    if word == "sstate":
        return qc.with_vec(lambda conn: conn.sstate == state, server)
    return qc.with_vec(lambda conn: conn.cstate == state or conn.sstate == state, qc.either(client, server))


def _endpoint(word: str, arg: _Token) -> Predicate:
    """`server 10.0.0.1:443`, `server [fd00::1]:443`, or the address alone (any port): one side, exactly."""
    text = arg.text
    host, port = text, None
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if rest or not closed:
            port = rest[1:] if rest.startswith(":") and closed else "x"
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        packed = ipaddress.ip_address(host).packed
        number = None if port is None else int(port)
    except ValueError:
        raise QueryError(f"'{text}' is not an address or address:port (10.0.0.1:443, [fd00::1]:443)",
                         arg.pos) from None
    if number is not None and not 0 <= number <= 65535:
        raise QueryError(f"'{text}': the port is not within 0-65535", arg.pos)
    host = qc.exact(f"{word}-host", packed)
    port = host if number is None else qc.both(host, qc.in_range("s_port" if word == "server" else "c_port",
                                                                 number, number))
    if word == "server":
        if number is None:
            return qc.with_vec(lambda conn: conn.s_addr == packed, host)
        return qc.with_vec(lambda conn: conn.s_addr == packed and conn.s_port == number, port)
    if number is None:
        return qc.with_vec(lambda conn: conn.c_addr == packed, host)
    return qc.with_vec(lambda conn: conn.c_addr == packed and conn.c_port == number, port)


def _problem(arg: _Token, lens: Lens) -> Predicate:
    """A term judged at a moment: `term(row, now)` (now None: the row's last packet); on the columns, the
    source's own detection (ColumnSource.problems, made at its moment)."""
    kind = arg.text.lower().replace("-", "_")
    if kind == "any":
        return qc.timed(lambda conn, now=None: any(lens.has(conn, name, now) for name in KIND_NAMES),
                        qc.problem(None))
    if kind not in KIND_NAMES:
        close = difflib.get_close_matches(kind, KIND_NAMES, n=1, cutoff=0.6)
        hint = f": did you mean '{close[0]}'?" if close else f" ({', '.join(KIND_NAMES)}, or any)"
        raise QueryError(f"'{arg.text}' is not a problem kind{hint}", arg.pos)
    return qc.timed(lambda conn, now=None: lens.has(conn, kind, now), qc.problem(KIND_NAMES.index(kind)))


def _port_range(arg: _Token) -> tuple[int, int]:
    text = arg.text
    low_text, sep, high_text = text.partition("-")
    try:
        low = int(low_text)
        high = int(high_text) if sep else low
    except ValueError:
        raise QueryError(f"'{text}' is not a port or a range (80, 1024-2000)", arg.pos) from None
    if not (0 <= low <= high <= 65535):
        raise QueryError(f"'{text}' is not a port range within 0-65535", arg.pos)
    return low, high


def _bare(tok: _Token) -> Predicate:
    """A word that is no keyword: a state's name in any spelling (that state, either side), else a piece of an
    address or port (`10.0.0.`, `:8080`, `fd00`) or of a state name (`wait`); anything else is a mistake."""
    word = tok.text
    try:
        state = parse_state(word)
    except ValueError:
        pass
    else:
        return _state("state", state)
    needle = word.lower()
    state_needle = needle.replace("-", "_")
    if not _ADDRESS_WORD.fullmatch(needle) and not any(state_needle in name for name in _STATE_TEXT):
        raise QueryError(_unknown_word(word), tok.pos)

    def matches(conn: ConnRow) -> bool:
        return (needle in f"{format_addr(conn.c_addr)}:{conn.c_port}".lower()
                or needle in f"{format_addr(conn.s_addr)}:{conn.s_port}".lower()
                or state_needle in NAMES[conn.cstate].lower() or state_needle in NAMES[conn.sstate].lower())

    return matches


def _may_be_state(word: str) -> bool:
    """Does a bare word match a state (its name in any spelling, or a piece of one)?"""
    try:
        parse_state(word)
    except ValueError:
        text = word.lower().replace("-", "_")
        return any(text in name for name in _STATE_TEXT)
    return True


def _unknown_word(word: str) -> str:
    """What to say about a word that is neither a keyword, an address piece nor a state: suggest the keyword."""
    head, sep, rest = word.partition("=")
    if sep and head.lower() in KEYWORDS:
        value = rest.lstrip("=")
        return f"unknown word {word!r}: write '{head.lower()} {value}' (a space, not '=')"
    close = difflib.get_close_matches(word.lower(), KEYWORDS, n=1, cutoff=0.6)
    if close:
        return f"unknown word {word!r}: did you mean '{close[0]}'?"
    return f"unknown word {word!r}: not a keyword, a TCP state, nor part of an address (the keywords: see ?)"


def compile_query(text: str, lens: Lens | None = None, names: Names | None = None) -> Predicate:
    """`predicate(row, now=None)`. `lens`: the thresholds the term `problem KIND` judges with (default: the
    defaults); `now`, given at each call, the moment (None: each row's last packet); `names`: the host names the
    term `name` reads (none: it matches nothing)."""
    return qc.timed_parts([_Parser(text, lens, names).parse()])[0]


# the terms a connection's first packet settles for good
START_TERMS = frozenset({"host", "net", "port", "sport", "dport", "vlan", "server", "client", "midstream"})


def settled_at_start(text: str) -> bool:
    """Does the expression speak only of what a connection's first packet settles (its addresses, ports, VLANs,
    whether it was picked up mid-stream), so that it is true or false for it from then on?"""
    parser = _Parser(text)
    parser.parse()
    return not parser.bare_state and parser.used <= START_TERMS


def keywords_used(text: str) -> set[str]:
    """The keywords a valid expression uses (`ended`, `host`...); raises QueryError like compile_query."""
    parser = _Parser(text)
    parser.parse()
    return parser.used
