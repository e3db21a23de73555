"""Whether sensors, the schedule and declarative automation start switched on.

``MODELREC_AUTOMATION=on`` (the default) starts them RUNNING as soon as a daemon (``make ui``
runs one) loads the code location; ``off`` leaves them STOPPED until toggled in the UI.
"""

import os

from dagster import DefaultScheduleStatus, DefaultSensorStatus


def automation_enabled() -> bool:
    return os.environ.get("MODELREC_AUTOMATION", "on").strip().lower() not in ("off", "0", "false", "no")


def sensor_status() -> DefaultSensorStatus:
    return DefaultSensorStatus.RUNNING if automation_enabled() else DefaultSensorStatus.STOPPED


def schedule_status() -> DefaultScheduleStatus:
    return DefaultScheduleStatus.RUNNING if automation_enabled() else DefaultScheduleStatus.STOPPED
