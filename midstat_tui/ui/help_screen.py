"""`?`: every key, in one modal table."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

KEYS = """\
# midstat keys

| key | does |
|---|---|
| ↑ ↓ j k, PgUp PgDn, Home End | move in the table |
| ← → | scroll sideways, a column at a time |
| Enter (or double click) | open the flow: both sides, counters, its state history |
| `l` `a` `w` (flow) | ladder of its packets (Enter unfolds a run) / absolute seq / write its packets (pcap) |
| `t` `z` (flow) | time-sequence picture of the flow / zoom it to the data |
| `/` | filter, applied as you type (Enter keeps it, Esc clears; ↑ ↓ walk the filter history) |
| `f`, then `s` `c` `p` `t` | quick filter: this row's server, client host, server port or state pair |
| `v` | group by server, server host, client host, state pair, VLAN, Zeek state, then connections again |
| Enter, Esc (grouped) | open a group's connections, come back to the groups |
| `G` / `gg` | to the last / first row |
| `n` | numbers → ports as service names (/etc/services) → host names too (learned from DNS, TLS SNI, HTTP Host) |
| `s` / `S` | sort by the next column / reverse the sort (or click a header); numbers largest first |
| `t` | show or hide ended connections |
| `c` | choose columns (each says on or off) |
| Space | pause: a file's replay stops; live, the view freezes while capture goes on |
| `.` | one second further, while paused (files) |
| `+` / `-` | replay faster / slower (files; `0` plays as fast as possible) |
| `[` / `]` | back / forward 10 s of packet time (files: the table as it was then, from first to last packet) |
| `g` | go to a time of the file: `+SECONDS`, `HH:MM:SS` (UTC), `YYYY-MM-DD HH:MM:SS` or epoch seconds |
| `p` | the problems lens: per kind its count, threshold, meaning, connections (Enter: filter; `T`: threshold) |
| `e` / `E` | export the current view (filtered, sorted) to CSV / JSON: the `--summary --json` record, raw numbers |
| `?` | this help |
| `q`, Ctrl+C | quit |

## The header

1. the file or interface (and its capture filter) · the time of the table, UTC, to the tenth of a second · the
   state: `▶ playing at ×1` (or as fast as possible), `PAUSED`, `end of the file`; live: `● live`, `PAUSED` (the
   view is frozen, the capture goes on), `capture stopped` (the interface went away) · `⚠ N problems (p)` when
   the problems lens finds some
2. files: where the replay is, `at +1.2s of 2.5s`, with a progress bar; live: the capture's counters (received,
   dropped by the kernel, by the interface), moving even while paused
3. traffic (packets and bits per second) · open connections · rows shown (filter, `t`) of the rows in the table
   (ended connections stay a while) · connections new and ended per second · evicted (table full) · CPU per shard
4. only when there are some: packets not tracked (bad checksum, non-TCP, malformed), and a hint
5. sparklines of open connections and packets per second, one bar per second from zero to the max in the label

## Filter language

`host 10.0.0.1` · `net 10.0.0.0/8` · `port 80` · `sport 1024-2000` · `dport 443` · `state ESTABLISHED` (either
side) · `cstate SYN_SENT` · `sstate close-wait` · `server 10.0.0.1:443` · `client 10.0.0.2` (one side's address,
with or without its port) · `vlan 100` · `midstream` · `ended` · `suspicious` (blind or injected RSTs) ·
`zeek REJ` · `problem close_wait` (a kind of the problems lens, or `problem any`), combined with `and` (`&`), `or`
(`|`), `not` (`!`) and parentheses. `ss` state names work too; a state name alone (`time-wait`) matches that state
on either side; another bare word matches a piece of an address, port or state (`10.0.0.`, `:8080`, `wait`). An
unknown word is an error with a suggestion.

## Table

`!` first column: suspicious RSTs (blind or injected) · VLAN shown by itself when the capture has tags ·
addresses as wide as the widest · a reused port: the earlier incarnation stays, ended `port_reuse`

## State colours

yellow: handshake · green: established · purple: closing · red: closed or reset · dim: ended, leaving soon

## Flow counters

blind RST: out of the receiver's window, ignored by its stack (a blind reset guess) · odd RST: another TTL or
source MAC than the sender's other packets (injected on the path?) · bad flags: SYN+FIN, NULL, Xmas and other
combinations no stack sends (they change no state) · bad csum: checksum errors (the packet is not tracked)
"""


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 90%; max-width: 110; height: 90%; border: round $accent;
                                  background: $surface; padding: 0 1; }
    """
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Markdown(KEYS)

    def action_close(self) -> None:
        self.dismiss(None)
