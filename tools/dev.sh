#!/bin/sh
# The README's entry point: `tools/dev.sh demo` and `tools/dev.sh test`.
#
# Works on a stock Debian 12 as root, with nothing installed beforehand.
# Debian's python3 is externally managed (PEP 668), has no pip and no venv
# support until python3-venv is installed, and apt's tox (3.28) is older
# than tox.ini's minversion. So, in this order:
#
# 1. install the Debian packages bindep.txt lists without a profile
#    (tools/testbed.py reads the file: one parser for it);
# 2. create a private virtualenv, .tox/.bootstrap, with tox at least
#    tox.ini's minversion (nothing is installed into Debian's python3);
# 3. run that tox: `demo` = `tox -e demo`; `test` = `tox` (every test:
#    py3, functional, pep8), or `tox ARGS` when given more arguments.
#
# The test bed installs its own packages (bindep.txt's "test" profile) and
# its kernel when tox first runs it.
set -eu

usage() {
    echo "usage: tools/dev.sh demo | test [tox arguments, e.g. -e py3]" >&2
    exit 2
}

[ $# -gt 0 ] || usage
command=$1
shift
case "$command" in
    demo) set -- -e demo "$@" ;;
    test) ;;
    *) usage ;;
esac

cd "$(dirname "$0")/.."
python3 tools/testbed.py packages --install

venv=.tox/.bootstrap
minversion=$(sed -n 's/^minversion *= *//p' tox.ini)
if [ ! -x "$venv/bin/pip" ]; then
    python3 -m venv "$venv"
fi
# Quiet, and offline once satisfied.
"$venv/bin/pip" install --quiet --disable-pip-version-check \
    "tox>=${minversion:?tox.ini has no minversion}"
exec "$venv/bin/tox" "$@"
