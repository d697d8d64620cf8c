#!/bin/sh
# Install midstat for every user of this machine, as root, with the distribution's own Python: a virtual environment
# in /opt/midstat (PEP 668 keeps pip out of the system interpreter; /opt is readable by the user midstat gives root up
# to), linked as /usr/local/bin/midstat. `--test` installs what the test suite needs as well, editable from this checkout.
set -eu
cd "$(dirname "$0")/.."
prefix=${MIDSTAT_PREFIX:-/opt/midstat}
python=/usr/bin/python3
# python3-venv makes the environment; gcc and python3-dev compile midstat's core (without them the slower
# pure-Python engine runs, and midstat says so)
packages="python3 python3-venv python3-dev gcc"
extra=""
if [ "${1:-}" = "--test" ]; then
    # the test hosts (network namespaces, veth, nft, ethtool), reference tools, a terminal for the TUI tests
    packages="$packages tcpdump iproute2 nftables ethtool util-linux tmux tcpreplay tshark nfdump"
    extra="[test]"
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run it as root (sudo sh scripts/install.sh)" >&2
    exit 2
fi
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $packages >/dev/null
umask 022
"$python" -m venv "$prefix"
if [ -n "$extra" ]; then
    "$prefix/bin/pip" install -q -e ".$extra"
else
    "$prefix/bin/pip" install -q .
fi
ln -sf "$prefix/bin/midstat" /usr/local/bin/midstat
echo "installed: $("$prefix/bin/midstat" --version) in $prefix, linked as /usr/local/bin/midstat"
