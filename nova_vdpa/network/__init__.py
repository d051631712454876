"""Host networking for vDPA ports: Open vSwitch hardware offload readiness,
switchdev eswitch state and VF representors, read through ovsdbapp and the
kernel boundary; plugging reuses os-vif.
"""
