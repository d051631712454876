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

"""The periodic orphan sweep: devices of ours that nothing here uses.

Start-up reconciliation (:mod:`nova_vdpa.compute.startup`) deletes the
devices a crash left; devices are also left while nova-compute runs (a
release that failed in a cleanup path Nova swallows, an operator's
``nova-manage`` fix-up, a port deleted under a stopped guest). The driver's
periodic resource update calls :meth:`OrphanSweep.sweep`, after the
deferred releases were retried. A device of ours is an orphan when

* its port is not a vdpa port of any instance on this host or migrating
  to or from it (the instances' network info, read as the start-up reads
  it: :func:`~nova_vdpa.compute.startup.expected_ports`),
* no live migration prepared here names it, no deferred release waits
  for it,
* no running libvirt domain names its chardev,

and it was one at the previous sweep too: a device just made for an
interface attach or a build shows up in no instance's network info until
Nova saved it, and QEMU opens it moments later. The memory of the last
sweep is a set of device names, not a record of devices: the kernel stays
the record. An orphan is released through the allocator (its per-port
lock, the daemon's holder check: a held one is left, nothing waits) with
one WARNING. The sweep never raises into the resource update: what it
cannot read now it leaves for the next one.

The database is read only when a device of ours is not in use by a guest.
"""

import typing as ty

import nova.context as nova_context
import nova.exception as nova_exception
from nova.virt.libvirt import host as libvirt_host
from oslo_log import log as logging
import oslo_messaging as messaging

from nova_vdpa import allocator as vdpa_allocator
from nova_vdpa.compute import holders
from nova_vdpa.compute import startup
from nova_vdpa import exception

LOG = logging.getLogger(__name__)


def _port_of(name: str) -> str:
    return name[len(vdpa_allocator.DEVICE_PREFIX):]


class OrphanSweep:
    """Releases devices of ours found unused in two consecutive sweeps."""

    def __init__(self) -> None:
        #: devices found orphaned by the last sweep
        self._suspects: set[str] = set()

    def sweep(self, driver: ty.Any, host: str) -> list[str]:
        """One sweep; never raises.

        :param driver: the LibvirtVdpaDriver.
        :param host: this compute host's name (``CONF.host``).
        :returns: the names of the devices released.
        """
        allocator = driver.vdpa_allocator
        try:
            devices = allocator.owned_devices()
        except exception.NovaVdpaException as e:
            LOG.warning('vDPA orphan sweep skipped: the devices could not '
                        'be listed: %s', e)
            return []
        busy = ({p.port_id for p in driver.vif_driver.releases.pending()}
                | driver.vdpa_incoming.port_ids())
        candidates: dict[str, ty.Any] | None = {
            d.name: d for d in devices if _port_of(d.name) not in busy}
        if candidates:
            candidates = self._not_in_guests(driver, candidates)
        if candidates:
            candidates = self._not_expected(driver, host, candidates)
        if candidates is None:
            return []  # nothing known: the suspects wait for the next one
        released = []
        suspects = set()
        for name in sorted(candidates):
            if name not in self._suspects:
                suspects.add(name)
                continue
            if self._release(allocator, name, candidates[name]):
                released.append(name)
            else:
                suspects.add(name)
        self._suspects = suspects
        return released

    @staticmethod
    def _not_in_guests(driver: ty.Any, candidates: dict[str, ty.Any]
                       ) -> dict[str, ty.Any] | None:
        """The candidates whose chardev no running domain names."""
        try:
            held = holders.held(driver._host)
        except (libvirt_host.libvirt.libvirtError,
                nova_exception.NovaException) as e:
            LOG.warning('vDPA orphan sweep skipped: the libvirt domains '
                        'could not be listed: %s', e)
            return None
        out = {}
        for name, device in candidates.items():
            try:
                chardev = driver.vdpa_allocator._sysfs.chardev(name)
            except exception.NovaVdpaException:
                chardev = None  # not bound to vhost_vdpa: no guest has it
            if chardev not in held:
                out[name] = device
        return out

    @staticmethod
    def _not_expected(driver: ty.Any, host: str,
                      candidates: dict[str, ty.Any]
                      ) -> dict[str, ty.Any] | None:
        """The candidates whose port no instance here has."""
        context = nova_context.get_admin_context()
        try:
            expected = startup.expected_ports(driver, host, context)
        except (nova_exception.NovaException,
                messaging.MessagingException) as e:
            LOG.warning('vDPA orphan sweep skipped: the instances of this '
                        'host could not be read: %s', e)
            return None
        if expected is None:
            return None
        return {name: device for name, device in candidates.items()
                if _port_of(name) not in expected}

    @staticmethod
    def _release(allocator: vdpa_allocator.Allocator, name: str,
                 device: ty.Any) -> bool:
        """Release one orphan; True when it is gone."""
        port_id = _port_of(name)
        try:
            allocator.release(port_id)
        except exception.VdpaDeviceInUse:
            LOG.debug('vDPA device %s is an orphan but a process holds it: '
                      'left in place', name)
            return False
        except (exception.VdpaDeleteTimeout,
                exception.VdpaKernelTimeout) as e:
            LOG.warning('vDPA device %(device)s belongs to no instance on '
                        'this host; its release did not finish and is '
                        'tried again at the next sweep: %(error)s',
                        {'device': name, 'error': e})
            return False
        except exception.NovaVdpaException as e:
            LOG.error('vDPA device %(device)s belongs to no instance on '
                      'this host but could not be released: %(error)s',
                      {'device': name, 'error': e})
            return False
        LOG.warning('vDPA device %(device)s of port %(port)s (management '
                    'device %(mgmtdev)s): no instance on this host uses its '
                    'port and no process holds it; released as an orphan '
                    '(seen in two periodic updates).',
                    {'device': name, 'port': port_id,
                     'mgmtdev': device.mgmtdev})
        return True
