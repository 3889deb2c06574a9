"""Resource sensors (docs/sensors.md), one file per kind, built from the `sensors` section of aios.yaml.

`build.build_sensors` makes them; the service calls `build.scan_all(sensors, now)` every
`sensors.interval` and publishes the events it returns.
"""
