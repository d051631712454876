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

"""The Nova-facing room of nova-vdpa.

``driver`` (the compute driver nova-compute loads), ``vif`` (the VIF
driver for ``vnic_type=vdpa`` ports), ``inventory`` (which VFs Nova sees as
``vdpa``), ``holders`` (which guest holds a chardev), ``errors`` (our
exceptions as Nova's), ``overrides`` (every Nova internal we rely on,
and the supported Nova releases) and ``install`` (whether Nova's loader
finds us). Only this room imports Nova's driver code; the allocator and the
kernel boundary below it import nothing of Nova.
"""
