# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""The allocator room: one vDPA device per vdpa port.

Its face re-exports what callers use; the :class:`Allocator` and the
decisions it rests on live in :mod:`nova_vdpa.allocator.allocator`, the
names and data classes in :mod:`nova_vdpa.allocator.ports`, the deferred
releases in :mod:`nova_vdpa.allocator.deferred`. Nothing here imports
Nova.
"""

from nova_vdpa.allocator.allocator import Allocator  # noqa: F401
from nova_vdpa.allocator.allocator import DEFAULT_READ_TIMEOUT  # noqa: F401
from nova_vdpa.allocator.ports import Allocation  # noqa: F401
from nova_vdpa.allocator.ports import device_name  # noqa: F401
from nova_vdpa.allocator.ports import DEVICE_PREFIX  # noqa: F401
from nova_vdpa.allocator.ports import is_ours  # noqa: F401
from nova_vdpa.allocator.ports import parse_simulated_vfs  # noqa: F401
from nova_vdpa.allocator.ports import PortRequest  # noqa: F401
from nova_vdpa.allocator.ports import ReconcileResult  # noqa: F401
