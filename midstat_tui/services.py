"""Port numbers to service names, for the TUI's names view (`n`). No UI import, no network: the names come from
/etc/services (its TCP entries), or, when that file is missing or unreadable, from a short list shipped here of the
common ports under their IANA names (`source` says which)."""

from __future__ import annotations

from dataclasses import dataclass

ETC_SERVICES = "/etc/services"

# IANA service names (https://www.iana.org/assignments/service-names-port-numbers) of common TCP ports
SHIPPED: dict[int, str] = {
    20: "ftp-data", 21: "ftp", 22: "ssh", 23: "telnet", 25: "smtp", 53: "domain", 80: "http", 88: "kerberos",
    110: "pop3", 111: "sunrpc", 119: "nntp", 135: "epmap", 139: "netbios-ssn", 143: "imap", 179: "bgp",
    389: "ldap", 443: "https", 445: "microsoft-ds", 465: "submissions", 514: "shell", 587: "submission",
    631: "ipp", 636: "ldaps", 873: "rsync", 993: "imaps", 995: "pop3s", 1433: "ms-sql-s", 1883: "mqtt",
    2049: "nfs", 3306: "mysql", 3389: "ms-wbt-server", 5060: "sip", 5432: "postgresql", 5672: "amqp",
    6379: "redis", 8080: "http-alt", 8883: "secure-mqtt", 11211: "memcache", 27017: "mongodb",
}


@dataclass(frozen=True)
class Services:
    names: dict[int, str]
    source: str             # "/etc/services", or "the shipped list (no /etc/services)"

    def name(self, port: int) -> str | None:
        return self.names.get(port)


def parse_services(text: str) -> dict[int, str]:
    """The TCP entries of a services(5) file: `name port/tcp [aliases] [# comment]`; the first name of a port wins."""
    names: dict[int, str] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        port, _, proto = fields[1].partition("/")
        if proto.lower() == "tcp" and port.isdigit() and 0 < int(port) <= 65535:
            names.setdefault(int(port), fields[0])
    return names


def load_services(path: str = ETC_SERVICES) -> Services:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            names = parse_services(fh.read())
    except OSError:
        names = {}
    if names:
        return Services(names, path)
    return Services(dict(SHIPPED), f"the shipped list (no {path})")
