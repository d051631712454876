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

"""A guest that carries traffic in the bed: iPXE, pinging through its NIC.

No OS: QEMU boots Debian 13's ``ipxe.lkrn`` (fetched by ``testbed.py
prepare`` and copied into every run folder) as the guest's kernel, with an
iPXE script as its initrd, and SeaBIOS copies the console to a serial file
(``<bios useserial='yes'/>``). The script opens net0, gives it an address
and pings that address: vdpa_sim_net loops every frame back, so each ping
is an ARP or ICMP frame out of the guest and back in through the device.

Two phases, each marked on the console:

1. ``PINGS`` pings to the guest's own address, with the port's MAC: every
   frame is addressed to the device's MAC and must come back;
2. the guest changes its MAC to :data:`WRONG_MAC` (which differs from any
   ``fa:16:3e`` port MAC in its first octet: vdpa_sim_net compares MACs
   with ``strncmp``, which stops at the first zero octet) and a new
   address, and pings that: the ARP reply it sends itself is addressed to
   the wrong MAC, and the device's receive filter drops it (an rx drop).

After ``ifstat`` the guest idles in iPXE's shell: no frame moves any more,
so counters read then are final. Used by tests/functional/test_datapath.py,
tools/demo.py and tools/bench_migration_traffic.py.
"""

import os
import re
import shutil
import time
import uuid

from lxml import etree
from nova.virt.libvirt import config as vconfig

#: pings of phase 1; each is two frames out and two back after ARP
PINGS = 20
#: phase 2's MAC: unicast, differs from fa:16:3e:.. in its first octet
WRONG_MAC = '06:aa:bb:cc:dd:ee'
END = 'nova-vdpa: end'
#: the console's line before phase 1 (and before a loop's rounds)
PHASE_1 = 'nova-vdpa: phase 1'
#: pings of one round of a loop, between two ``ifstat``
ROUND = 25
#: the traffic guest's iPXE, copied into the run folder by testbed.py
IPXE_NAME = 'ipxe.lkrn'

# iPXE's pinger prints "64 bytes from A: seq=N" for a reply, "0 bytes
# from <none>: seq=N: <error>" for a ping that timed out, and "64 bytes
# from A: seq=N: <error>" for a reply that came after its ping timed out
# (out of sequence): that frame came back too, late.
_REPLY_RE = re.compile(r'([1-9]\d*) bytes from ([0-9.]+): seq=(\d+)\b')
_TIMED_OUT_RE = re.compile(r'\b0 bytes from \S+: seq=(\d+): ')
_IFSTAT_RE = re.compile(r'TX:(\d+) TXE:(\d+) (?:TXD:\d+ )?RX:(\d+) RXE:(\d+)')


def ipxe_path() -> str:
    """The bed's ipxe.lkrn; raises AssertionError naming what is missing."""
    run = os.environ.get('NOVA_VDPA_TESTBED_RESULTS', '')
    path = os.path.join(run, IPXE_NAME)
    if not os.path.exists(path):
        raise AssertionError(
            '%s is missing: tools/testbed.py prepare fetches Debian 13\'s '
            'ipxe package and boot() copies ipxe.lkrn into the run folder'
            % path)
    return path


def script(address: str, pings: int = PINGS, loop: bool = False,
           ping_target: str | None = None,
           rounds: int | None = None) -> str:
    """The iPXE script: phase 1, phase 2, then idle (see the module).

    :param address: the guest's IPv4 address (a /24).
    :param loop: ping phase 1 forever instead (a live migration with
        traffic), in rounds of :data:`ROUND` pings, each followed by
        ``ifstat``.
    :param ping_target: what a loop pings; the guest's own address by
        default (a plain NIC on QEMU's user network pings its gateway).
    :param rounds: end a loop after this many rounds: print :data:`END`
        and idle, so that counters read then are final.
    """
    net, _, host = address.rpartition('.')
    other = '%s.%d' % (net, (int(host) % 250) + 1)
    lines = ['#!ipxe', 'ifopen net0',
             'set net0/ip %s' % address,
             'set net0/netmask 255.255.255.0']
    if loop:
        # The first ping resolves the target's MAC (ARP), which under
        # nested TCG takes longer than a loop's 200 ms timeout: once,
        # before the loop's marker.
        lines.append('ping --count 1 --timeout 3000 %s ||'
                     % (ping_target or address))
    lines.append('echo %s' % PHASE_1)
    ping = ['ping --count %d --timeout 200 %s ||'
            % (ROUND, ping_target or address), 'ifstat net0']
    if loop and rounds:
        lines += ping * rounds + ['echo %s' % END, 'shell']
    elif loop:
        lines += [':again'] + ping + ['goto again']
    else:
        lines += ['ping --count %d --timeout 3000 %s ||' % (pings, address),
                  'ifstat net0',
                  'echo nova-vdpa: phase 2',
                  'set net0/mac %s' % WRONG_MAC,
                  'set net0/ip %s' % other,
                  'ping --count 2 --timeout 1000 %s ||' % other,
                  'ifstat net0',
                  'echo %s' % END, 'shell']
    return '\n'.join(lines) + '\n'


def guest_xml(name: str, interfaces, workdir: str, address: str,
              shared_memory: bool = False, loop: bool = False,
              memory_mib: int = 128,
              ping_target: str | None = None,
              rounds: int | None = None,
              uuid_: str | None = None) -> tuple[str, str]:
    """A TCG guest booting iPXE with ``interfaces``; (XML, serial path).

    Composed with Nova's own config classes. ``shared_memory`` renders
    what Nova renders for ``[libvirt] file_backed_memory`` (file-backed,
    shared guest RAM), the memory a virtual-address device can reach.
    """
    kernel = os.path.join(workdir, 'ipxe.lkrn')
    if not os.path.exists(kernel):
        shutil.copy(ipxe_path(), kernel)
    initrd = os.path.join(workdir, '%s.ipxe' % name)
    with open(initrd, 'w') as f:
        f.write(script(address, loop=loop, ping_target=ping_target,
                       rounds=rounds))
    serial_path = os.path.join(workdir, '%s.serial' % name)
    guest = vconfig.LibvirtConfigGuest()
    guest.virt_type = 'qemu'
    guest.name = name
    guest.uuid = uuid_ or str(uuid.uuid4())
    guest.memory = memory_mib * 1024
    guest.vcpus = 1
    guest.os_type = 'hvm'
    guest.os_mach_type = 'q35'
    guest.os_kernel = kernel
    guest.os_initrd = initrd
    if shared_memory:
        backing = vconfig.LibvirtConfigGuestMemoryBacking()
        backing.filesource = True
        backing.sharedaccess = True
        guest.membacking = backing
    serial = vconfig.LibvirtConfigGuestSerial()
    serial.type = 'file'
    serial.source_path = serial_path
    guest.add_device(serial)
    for interface in interfaces:
        guest.add_device(interface)
    root = etree.fromstring(guest.to_xml())
    # SeaBIOS copies iPXE's console to the serial port.
    etree.SubElement(root.find('os'), 'bios', useserial='yes')
    return etree.tostring(root, encoding='unicode'), serial_path


def complete_lines(text: str) -> str:
    """``text`` up to its last newline: no line cut in two.

    A console read while the guest writes may end in the middle of a
    line ("seq=12" of "seq=12: Connection timed out").
    """
    return text[:text.rfind('\n') + 1]


def from_phase_1(text: str) -> str:
    """The console from phase 1 on (a loop's rounds, without its ARP)."""
    return text.partition(PHASE_1)[2]


def console(serial_path: str) -> str:
    try:
        with open(serial_path, errors='replace') as f:
            return f.read()
    except FileNotFoundError:
        return ''


def wait_for(serial_path: str, marker: str, timeout: float) -> str:
    """The console once it shows ``marker``; AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        text = console(serial_path)
        if marker in text:
            return text
        if time.monotonic() > deadline:
            raise AssertionError('no %r on the guest console within %d s; '
                                 'it shows:\n%s' % (marker, timeout,
                                                    text[-2000:]))
        time.sleep(1)


def replies(text: str, address: str) -> list[int]:
    """Sequence numbers of the pings ``address`` answered, late or not."""
    return sorted({int(seq) for size, src, seq in _REPLY_RE.findall(text)
                   if src == address})


def lost(text: str, address: str) -> list[int]:
    """Sequence numbers of the pings ``address`` never answered.

    Those that timed out with no reply from it, not even a late one.
    """
    answered = set(replies(text, address))
    return sorted({int(seq) for seq in _TIMED_OUT_RE.findall(text)}
                  - answered)


def ifstat(text: str) -> list[tuple[int, int, int, int]]:
    """Every ``ifstat`` total on the console: (TX, TXE, RX, RXE)."""
    return [tuple(int(v) for v in m) for m in _IFSTAT_RE.findall(text)]
