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

"""The Linux boundary: vdpa generic netlink, sysfs and devlink.

Modules here import no OpenStack library (no oslo.*, no nova): they speak in
typed dataclasses and raise only :mod:`nova_vdpa.exception` errors, so they
can be run and tested on their own against a real or a fake kernel.
"""
