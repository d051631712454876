#    Licensed under the Apache License, Version 2.0 (the "License"); you may
#    not use this file except in compliance with the License. You may obtain
#    a copy of the License at
#
#         http://www.apache.org/licenses/LICENSE-2.0
#
#    Unless required by applicable law or agreed to in writing, software
#    distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
#    WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
#    License for the specific language governing permissions and limitations
#    under the License.

"""``nova-vdpa-privsep-helper``: start nova-vdpa's privsep daemon, fixed.

nova-compute starts the daemon of ``nova_vdpa.privsep.vdpa_pctxt`` through
``[nova_vdpa_privileged] helper_command``; oslo.privsep appends exactly
``--privsep_context <context> --privsep_sock_path <socket>`` to that
command (the socket in a fresh ``tempfile.mkdtemp()`` directory). This
command, run as root by sudo or nova-rootwrap, accepts those four
arguments and nothing else, and starts oslo.privsep's ``privsep-helper``
with configuration files of its own choosing (:data:`CONFIG_FILES`), so a
caller cannot hand the root daemon a configuration (``log_config_append``,
``capabilities``, ``management_devices``) or another context.

Why not a rootwrap filter on ``privsep-helper`` itself: oslo.rootwrap's
``load_filters`` always adds ``privsep-helper`` with any arguments after
the filters it reads, so no filter file can narrow that command. The
filter nova-vdpa ships (``etc/nova-vdpa/rootwrap.d/nova-vdpa.filters``)
names this command with exact arguments instead.

Only the standard library is imported before the arguments are checked.
"""

import os
import re
import sys
from typing import Callable, Sequence

#: the one context this command starts
CONTEXT = 'nova_vdpa.privsep.vdpa_pctxt'
#: the daemon's configuration, in this order; each one that exists is read
#: (``nova.conf`` must). Root-owned paths: never a caller's choice.
CONFIG_FILES = ('/etc/nova/nova.conf', '/etc/nova/nova-compute.conf')
#: what oslo.privsep's RootwrapClientChannel passes: tempfile.mkdtemp()
#: under /tmp ("tmp" and 8 of tempfile's characters), then privsep.sock
SOCK_PATH_RE = re.compile(r'/tmp/tmp[a-z0-9_]{8}/privsep\.sock')

USAGE = ('usage: nova-vdpa-privsep-helper --privsep_context %s '
         '--privsep_sock_path /tmp/tmpXXXXXXXX/privsep.sock\n'
         '(set [nova_vdpa_privileged] helper_command to this command '
         'behind sudo or nova-rootwrap, without arguments)' % CONTEXT)


class Refused(Exception):
    """The command line is not the one this command accepts."""


def daemon_argv(args: Sequence[str],
                exists: Callable[[str], bool] = os.path.isfile) -> list[str]:
    """``privsep-helper``'s command line for this command's ``args``.

    :param args: this command's arguments (without the program name).
    :param exists: whether a configuration file exists (tests).
    :raises: Refused unless ``args`` are exactly the context and a socket
        path as oslo.privsep makes them, or when nova.conf is missing.
    """
    args = list(args)
    if len(args) != 4 or args[0] != '--privsep_context' or \
            args[2] != '--privsep_sock_path':
        raise Refused('exactly --privsep_context and --privsep_sock_path '
                      'are accepted, got %r' % (args,))
    if args[1] != CONTEXT:
        raise Refused('only the context %s is started, not %r'
                      % (CONTEXT, args[1]))
    if not SOCK_PATH_RE.fullmatch(args[3]):
        raise Refused('%r is not a socket path oslo.privsep makes '
                      '(/tmp/tmpXXXXXXXX/privsep.sock)' % (args[3],))
    files = [f for f in CONFIG_FILES if exists(f)]
    if CONFIG_FILES[0] not in files:
        raise Refused('%s is missing' % CONFIG_FILES[0])
    argv = ['privsep-helper']
    for f in files:
        argv += ['--config-file', f]
    return argv + args


def main() -> None:
    """Check the arguments, then run oslo.privsep's helper in-process."""
    try:
        argv = daemon_argv(sys.argv[1:])
    except Refused as e:
        sys.stderr.write('nova-vdpa-privsep-helper: refused: %s\n%s\n'
                         % (e, USAGE))
        sys.exit(2)
    # oslo.config also reads its default directories, among them
    # ~/.privsep/privsep.conf.d: root's home, whatever HOME the caller's
    # environment left.
    import pwd
    os.environ['HOME'] = pwd.getpwuid(os.getuid()).pw_dir
    sys.argv = argv
    from oslo_privsep import daemon
    daemon.helper_main()
